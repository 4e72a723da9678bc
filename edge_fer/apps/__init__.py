"""The command-line programs: edge-fer, edge-fer-classify, edge-fer-monitor."""
