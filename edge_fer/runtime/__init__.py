"""The daemon's life: the per-frame pipeline, its result types, stats, summaries, systemd."""
