"""edge-fer-monitor: SoC power, CPU, memory, thermals and the daemon's live latency."""
