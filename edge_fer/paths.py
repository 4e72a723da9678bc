"""Every well-known path in one place: daemon runtime files, config, dataset, models."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout (for tools, benchmarks and tests run from a clone); meaningless once installed.
PROJECT_ROOT = PACKAGE_DIR.parent

DEFAULT_CONFIG = Path("/etc/edge-fer/config.yaml")
DEFAULT_STATS = Path("/run/edge-fer/stats.json")
# FER2013 as this project's workplace lays it out beside the checkout; EDGE_FER_DATA moves it.
DEFAULT_DATA = Path(os.environ.get("EDGE_FER_DATA", PROJECT_ROOT.parent / "shared" / "datasets" / "fer2013"))
# The default face detector ships inside the package (OpenCV Zoo's YuNet, MIT: LICENSE-YUNET).
SHIPPED_YUNET = PACKAGE_DIR / "models" / "face_detection_yunet_2026may.onnx"
DEFAULT_YUNET = Path(os.environ.get("EDGE_FER_YUNET", SHIPPED_YUNET))
