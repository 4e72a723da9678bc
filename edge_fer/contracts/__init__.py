"""Typed, versioned file contracts between edge-fer's programs: each file format is one
dataclass with a `format_version`, written and read through one module, older formats read by
one explicit migration. Nothing here imports torch: the runtime reads these files."""
