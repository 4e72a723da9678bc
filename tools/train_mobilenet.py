#!/usr/bin/env python3
"""Train the edge-fer emotion student: the `edge-fer-train` program (edge_fer/apps/train.py).

    .venv/bin/python tools/train_mobilenet.py --recipe recipes/shipped.yaml
    .venv/bin/python tools/train_mobilenet.py --quick

Same flags and exit codes as `edge-fer-train`; `--help` lists them.
"""

import sys

from edge_fer.apps.train import main

if __name__ == "__main__":
    sys.exit(main())
