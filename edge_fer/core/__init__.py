"""Pieces every program shares: paths, file and input boundaries, exit codes, memory, secrets."""
