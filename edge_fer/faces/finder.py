"""Where to look for faces in a frame, so small faces far from the camera are found too.

A face detector only finds faces of ~40-50 px and up in the image it is given, so shrinking a
1080p frame to 480 px wide loses every face under ~150 px, while running it on the whole frame
at full resolution costs ~140 ms a frame on two cores. The finder spends a small budget per
frame instead, where it is needed:

- **windows**, every detection round: around each tracked face too small for the coarse pass
  (under COARSE_SEES px in its image), a window scaled so the face is `track_zoom_px` in it:
  small faces stay found, cheaply, and each keeps its own box when faces sit close together;
- **tiles**, between and during rounds: a tile of the full-resolution frame zoomed by
  `tile_zoom`; every other frame the tile where something moved (outside the tracked faces)
  since it was last searched, so a person who walks in is looked for at once; otherwise the
  next tile of a rotation over the frame, paced so a sweep takes about SWEEP_FRAMES frames
  (the grid shifts by half a tile every other sweep, so a face on a seam in one sweep is
  inside a tile in the next): faces that sit still are found too;
- **coarse**: the whole frame at `detect_width` (or the camera's lores stream), for big faces:
  every round while it follows a tracked face, nothing is tracked or something moved
  elsewhere, else every COARSE_EVERY rounds.

All boxes come back in main-frame pixels, square, as the detector maps them to FER2013's crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from edge_fer.config import DetectorConfig
from edge_fer.faces.detect import FaceDetector, detection_image
from edge_fer.runtime.results import Box

# A window around a tracked face is this many face sides across: room for the face to drift
# between detection rounds, small enough that the zoomed window stays cheap.
WINDOW_SIDES = 2.5
# Zoom limits: past 4x a 16 px face holds no more detail, and big faces need no less than 1/8.
MAX_ZOOM = 4.0
MIN_ZOOM = 0.125
# Motion is watched on a thumbnail of 1/8 the frame's side; a thumbnail pixel whose grey level
# changes by more than MOTION_LEVEL has moved (sensor noise, averaged over 16 pixels, stays
# well under it), and a tile needs MOTION_MIN_PIXELS of them to be searched out of turn.
MOTION_SCALE = 8
MOTION_LEVEL = 12
MOTION_MIN_PIXELS = 4
# A still face anywhere is searched for at least once every SWEEP_FRAMES frames (2 s at 30 fps):
# a 1080p frame's 60 tiles take a tile a frame, a 640x480 frame's 9 one every ~7 frames.
SWEEP_FRAMES = 60
# With faces tracked (their windows keep them) and nothing moving elsewhere, the coarse pass
# for new big faces runs every COARSE_EVERY rounds only.
COARSE_EVERY = 4
# A tracked face this many pixels tall in the coarse pass's image is searched for there (the
# detector finds ~9 in 10 faces of 64 px); a smaller one in a window zoomed around it.
COARSE_SEES = 64
# Photos are searched level by level in tiles of this many detector pixels.
PHOTO_TILE = 640
PHOTO_PIXELS = 4_000_000


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    if (w, h) == size:
        return image
    shrink = size[0] < w
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area: 1 when one box lies inside the other."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return iw * ih / smaller if smaller > 0 else 0.0


def merge(groups: list[list[Box]], same_face: float = 0.5) -> list[Box]:
    """Boxes of several passes as one list, one box per face: a box that overlaps a kept one by
    more than `same_face` (of the smaller) is the same face; earlier groups win."""
    kept: list[Box] = []
    for boxes in groups:
        for box in boxes:
            if all(overlap(box, k) <= same_face for k in kept):
                kept.append(box)
    return kept


def tile_grid(size: tuple[int, int], tile: int, shifted: bool) -> list[tuple[int, int, int, int]]:
    """Tiles (x, y, w, h) covering a frame of `size`: `tile` px squares overlapping by at least a
    quarter, spread evenly edge to edge; `shifted`, the grid of the midpoints between them
    (over the seams of the first). A frame smaller than a tile is one tile."""

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        n = math.ceil((length - tile) / (tile * 0.75)) + 1
        edge = [round(i * (length - tile) / (n - 1)) for i in range(n)]
        if not shifted:
            return edge
        return [(a + b) // 2 for a, b in zip(edge, edge[1:], strict=False)]

    w, h = size
    tw, th = min(tile, w), min(tile, h)
    return [(x, y, tw, th) for y in starts(h) for x in starts(w)]


class FaceFinder:
    """Finds faces of every size a frame resolves, within a small per-frame budget."""

    def __init__(self, make_detector: Callable[[], FaceDetector], config: DetectorConfig) -> None:
        # One detector per pass: each keeps its own input size, so none is re-planned per call.
        self.coarse_detector = make_detector()
        self.name = self.coarse_detector.name
        self.window_detector = make_detector() if config.track_zoom_px > 0 else None
        self.tile_detector = make_detector() if config.tile_zoom > 0 else None
        self.detect_width = config.detect_width
        self.min_face = config.min_face
        self.track_zoom_px = config.track_zoom_px
        self.tile_zoom = config.tile_zoom
        self.tile_size = config.tile_size
        self._tiles: list[tuple[int, int, int, int]] = []
        self._tile_next = 0
        self._sweeps = 0
        self._frames = 0
        self._credit = 1.0  # rotation tiles owed (a sweep is paced over SWEEP_FRAMES frames)
        self._rounds = 0
        self._coarse_round = 0
        self._coarse_due = True
        self._frame_size: tuple[int, int] | None = None
        self._thumb: np.ndarray | None = None  # the last frame, 1/8 size, gray
        self._moved: np.ndarray | None = None  # where it changed since each place was searched

    def _keep(self, boxes: list[Box], size: tuple[int, int]) -> list[Box]:
        """The boxes clipped to the frame, without those smaller than `min_face`."""
        kept = []
        for x, y, bw, bh in boxes:
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(size[0], x + bw), min(size[1], y + bh)
            if min(bw, bh) >= self.min_face and x1 > x0 and y1 > y0:
                kept.append((x0, y0, x1 - x0, y1 - y0))
        return kept

    @staticmethod
    def _to_frame(boxes: list[Box], x0: float, y0: float, zoom: float) -> list[Box]:
        return [
            (int(round(x0 + x / zoom)), int(round(y0 + y / zoom)), int(round(w / zoom)), int(round(h / zoom)))
            for x, y, w, h in boxes
        ]

    def coarse(self, image: np.ndarray, lores: np.ndarray | None = None) -> list[Box]:
        """Big faces: the whole frame at `detect_width` (or the camera's lores stream)."""
        h, w = image.shape[:2]
        if lores is not None:
            small, zoom = lores, lores.shape[1] / w
        else:
            small, per_pixel = detection_image(image, self.detect_width)
            zoom = 1 / per_pixel
        return self._keep(self._to_frame(self.coarse_detector.detect(small), 0, 0, zoom), (w, h))

    def around(self, image: np.ndarray, tracked: list[Box]) -> list[Box]:
        """Faces in a window around each tracked box, zoomed so the face is `track_zoom_px`."""
        if self.window_detector is None:
            return []
        h, w = image.shape[:2]
        found: list[Box] = []
        for x, y, bw, bh in tracked:
            side = max(bw, bh, 1)
            zoom = min(MAX_ZOOM, max(MIN_ZOOM, self.track_zoom_px / side))
            half = side * WINDOW_SIDES / 2
            cx, cy = x + bw / 2, y + bh / 2
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            # Every window the same input size (the face's zoomed side x WINDOW_SIDES), so the
            # detector is planned once; a window cut by the frame's edge is padded.
            full = int(round(side * WINDOW_SIDES * zoom))
            size = (max(1, round((x1 - x0) * zoom)), max(1, round((y1 - y0) * zoom)))
            crop = _resize(image[y0:y1, x0:x1], size)[:full, :full]
            pad_x, pad_y = full - crop.shape[1], full - crop.shape[0]
            if pad_x or pad_y:
                crop = cv2.copyMakeBorder(crop, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)
            found += self._to_frame(self.window_detector.detect(crop), x0, y0, zoom)
        return self._keep(found, (w, h))

    def _watch_motion(self, image: np.ndarray, tracked: list[Box]) -> None:
        """Mark where the frame changed since the last frame (on an 1/8 thumbnail), outside the
        tracked faces: a person who walks in or turns up far away shows there first."""
        h, w = image.shape[:2]
        size = (max(1, w // MOTION_SCALE), max(1, h // MOTION_SCALE))
        # Bilinear to twice the size, then area-averaged: 16 of each 64 pixels averaged (noise
        # down 4x) for a tenth of the cost of averaging all 64 on a 1080p frame.
        half = cv2.resize(image, (size[0] * 2, size[1] * 2), interpolation=cv2.INTER_LINEAR)
        thumb = cv2.resize(half, size, interpolation=cv2.INTER_AREA)
        thumb = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY) if thumb.ndim == 3 else thumb
        if self._thumb is None or self._thumb.shape != thumb.shape:
            self._thumb, self._moved = thumb, np.zeros(thumb.shape, bool)
            return
        fresh = cv2.absdiff(thumb, self._thumb) > MOTION_LEVEL
        self._thumb = thumb
        m = MOTION_SCALE
        for x, y, bw, bh in tracked:  # a tracked face moving is not news
            near = (
                slice(max(0, (y - bh // 2) // m), (y + bh + bh // 2) // m + 1),
                slice(max(0, (x - bw // 2) // m), (x + bw + bw // 2) // m + 1),
            )
            fresh[near] = False
            self._moved[near] = False
        self._moved |= fresh
        if int(fresh.sum()) >= MOTION_MIN_PIXELS:
            self._coarse_due = True

    def _tile_for_frame(self, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """This frame's tile, if any: every other frame the tile where most has moved since it
        was last searched (if anything has); otherwise the next of the rotation, paced so a
        sweep of the frame takes about SWEEP_FRAMES frames (at most one tile a frame)."""
        if self._frame_size != size:
            self._frame_size, self._sweeps, self._tile_next, self._credit = size, 0, 0, 1.0
            self._tiles = tile_grid(size, self.tile_size, shifted=False)
        self._frames += 1
        self._credit = min(1.0, self._credit + len(self._tiles) / SWEEP_FRAMES)
        if self._frames % 2 == 0 and self._moved is not None:
            m = MOTION_SCALE
            counts = [
                int(self._moved[y // m : (y + th) // m, x // m : (x + tw) // m].sum())
                for x, y, tw, th in self._tiles
            ]
            best = int(np.argmax(counts))
            if counts[best] >= MOTION_MIN_PIXELS:
                return self._tiles[best]
        if self._credit < 1.0:
            return None
        self._credit -= 1.0
        tile = self._tiles[self._tile_next]
        self._tile_next += 1
        if self._tile_next == len(self._tiles):
            self._sweeps += 1
            self._tile_next = 0
            self._tiles = tile_grid(size, self.tile_size, shifted=self._sweeps % 2 == 1)
        return tile

    def _search_tile(self, image: np.ndarray) -> list[Box]:
        """Faces in this frame's tile (none if no tile is due), at full resolution x `tile_zoom`."""
        if self.tile_detector is None:
            return []
        h, w = image.shape[:2]
        tile = self._tile_for_frame((w, h))
        if tile is None:
            return []
        x, y, tw, th = tile
        if self._moved is not None:  # searched: what moved there is no longer news
            m = MOTION_SCALE
            self._moved[y // m : (y + th) // m, x // m : (x + tw) // m] = False
        zoom = self.tile_zoom
        patch = _resize(image[y : y + th, x : x + tw], (round(tw * zoom), round(th * zoom)))
        return self._keep(self._to_frame(self.tile_detector.detect(patch), x, y, zoom), (w, h))

    @property
    def sweep_frames(self) -> int:
        """Frames one sweep of the tiles takes at most, in a still scene (0: tiles off)."""
        return max(len(self._tiles), SWEEP_FRAMES) if self.tile_detector is not None else 0

    def round(self, image: np.ndarray, tracked: list[Box], lores: np.ndarray | None = None) -> list[Box]:
        """A full detection round: every tracked face is searched for at the scale that sees it
        best (big faces in the coarse pass, as ever; faces too small for it in a zoomed window),
        plus this frame's tile. The coarse pass runs when a tracked face needs it, nothing is
        tracked, something moved elsewhere, or every COARSE_EVERY rounds. One box per face: a
        window's first, then the coarse pass's (the box geometry the crops were measured on),
        then the tile's (new faces only)."""
        self._watch_motion(image, tracked)
        self._rounds += 1
        coarse_zoom = (
            lores.shape[1] if lores is not None else min(self.detect_width, image.shape[1])
        ) / image.shape[1]
        small = [b for b in tracked if max(b[2], b[3]) * coarse_zoom < COARSE_SEES]
        coarse_due = (
            self.window_detector is None
            or len(small) < len(tracked)
            or not tracked
            or self._coarse_due
            or self._rounds - self._coarse_round >= COARSE_EVERY
        )
        groups = [self.around(image, small)]
        if coarse_due:
            self._coarse_due, self._coarse_round = False, self._rounds
            groups.append(self.coarse(image, lores))
        groups.append(self._search_tile(image))
        return merge(groups)

    def between(self, image: np.ndarray, tracked: list[Box]) -> list[Box]:
        """A frame between rounds: this frame's tile only (new faces; the tracked ones were not
        searched for)."""
        self._watch_motion(image, tracked)
        return [b for b in self._search_tile(image) if all(overlap(b, t) <= 0.5 for t in tracked)]

    def everything(self, image: np.ndarray) -> list[Box]:
        """Every face in one still image (photos), at every scale: the image at `detect_width`,
        then twice as large at each level up to `tile_zoom` (at most PHOTO_PIXELS detector pixels
        for the finest level: a 12 MP photo is searched down to ~70 px faces, a 1080p one to
        ~30 px), each level cut into PHOTO_TILE px tiles that overlap by a quarter, so each face
        is whole in some tile at the level where it is 40-160 px."""
        h, w = image.shape[:2]
        top = min(max(self.tile_zoom, 1.0), math.sqrt(PHOTO_PIXELS / (w * h)))
        zoom = min(1.0, self.detect_width / w)
        groups = [self.coarse(image)]
        while zoom < top - 1e-9:
            zoom = min(top, zoom * 2)
            span = PHOTO_TILE / zoom  # a tile's side in image pixels
            for x, y, tw, th in tile_grid((w, h), max(1, round(span)), shifted=False):
                patch = _resize(
                    image[y : y + th, x : x + tw], (max(1, round(tw * zoom)), max(1, round(th * zoom)))
                )
                boxes = self._to_frame(self.coarse_detector.detect(patch), x, y, zoom)
                groups.append(self._keep(boxes, (w, h)))
        return merge(groups)
