"""Offline training: augmentation, training loops, pruning, int8 quantization, export.

Run by the edge-fer-train program (edge_fer/apps/train.py) and used by tools/evaluate.py;
the daemon never imports it.
"""
