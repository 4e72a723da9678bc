"""Outputs: where each frame's result goes. One `Output` class per destination.

The interface is in `base.py`; `registry.py` builds the outputs a config turns on.
"""
