"""Offline training: augmentation, training loops, pruning, int8 quantization, export.

Imported by tools/train_mobilenet.py and tools/evaluate.py; the daemon never imports it.
"""
