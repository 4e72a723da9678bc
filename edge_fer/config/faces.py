"""Config sections of finding faces: the detector and the tracker that keeps their ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_fer.core.paths import DEFAULT_YUNET
from edge_fer.core.schema import setting


@dataclass
class DetectorConfig:
    """Face detection."""

    kind: str = setting(
        "yunet",
        "yunet (CNN, finds more faces, faster) | haar (OpenCV's cascade)",
        choices=("haar", "yunet"),
        flag="--detector",
    )
    yunet_model: Path | None = setting(
        None,
        "YuNet .onnx file; null: $EDGE_FER_YUNET when set, else the one shipped inside the package"
        " (OpenCV Zoo, MIT)",
        flag="--yunet-model",
        flag_help="YuNet .onnx file (with --detector yunet)",
    )
    every_n_frames: int = setting(
        2, "detect every N frames; the IoU tracker carries faces between", ge=1, le=1000
    )
    detect_width: int = setting(
        480,
        "webcam/file frames are scaled to this width for detection",
        ge=32,
        le=8192,
        flag="--detect-width",
        flag_help="images and webcam/file frames are scaled to this width to find faces",
    )
    min_face: int = setting(
        16, "smallest face to track, in main-frame pixels (the side of its square box)", ge=1, le=4096
    )
    score_threshold: float = setting(0.6, "YuNet confidence threshold", gt=0, lt=1)
    track_zoom_px: int = setting(
        64,
        "each tracked face is looked for again in a window around it, scaled so the face is this"
        " many pixels (small faces zoomed in, big ones shrunk); 0: tracked faces are only found"
        " again by the coarse pass and the tiles",
        ge=0,
        le=256,
    )
    tile_zoom: float = setting(
        2.0,
        "one full-resolution tile per frame, in rotation over the frame, is scaled by this before"
        " detection: 2 finds faces from ~24 px, 1.5 from ~32 px, 1 from ~48 px; 0 turns tiles off"
        " (only faces of ~150 px and up on a 1080p frame are then found)",
        ge=0,
        le=4,
    )
    tile_size: int = setting(
        256,
        "side of a tile in main-frame pixels; smaller tiles cost less per frame but take more"
        " frames to sweep the frame",
        ge=64,
        le=4096,
    )

    @property
    def yunet_file(self) -> Path:
        """The YuNet model to load: `yunet_model`, else $EDGE_FER_YUNET, else the shipped one."""
        return self.yunet_model if self.yunet_model is not None else DEFAULT_YUNET


@dataclass
class TrackerConfig:
    """Stable face ids between detections."""

    iou_threshold: float = setting(
        0.3, "overlap that keeps a face's id from one detection to the next", gt=0, lt=1
    )
    max_missed: int = setting(
        5, "detection rounds a face may be missed before its id is dropped", ge=1, le=10000
    )
