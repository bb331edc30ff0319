"""Motion from the video: a running background on a small greyscale picture.

Runs in the camera's reader process. Lighting changes (a light switched on, the IR
day/night filter) change most of the picture at once; that is taken as a new
background, never as motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edgeagent.cameras.settings import CameraMotion

Image = npt.NDArray[np.uint8]

# Frames after a lighting change during which the picture settles (auto exposure,
# the IR filter moving) and the background is retaken rather than compared.
SETTLE_FRAMES = 3
# Two frames are the same picture when no scaled grey pixel differs by more than this:
# a live sensor always shows some noise, a frozen encoder or a stuck decoder shows none.
FROZEN_TOLERANCE = 1


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one analysed frame showed."""

    score: float  # largest moving blob, as a fraction of the picture
    moving: bool
    same: bool  # identical to the previous analysed frame
    recalibrated: bool
    started: bool  # motion began with this frame
    ended: bool  # motion_end is due with this frame


class MotionDetector:
    """Feeds on frames with their times; says when motion starts and ends."""

    def __init__(self, settings: CameraMotion) -> None:
        self.settings = settings
        self._background: npt.NDArray[np.float32] | None = None
        self._previous: Image | None = None
        self._mask: Image | None = None
        self._settle = 0
        self._active = False
        self._last_motion_at = 0.0
        self.recalibrations = 0

    def prepare(self, frame: Image) -> Image:
        """The frame scaled to the analysis width, grey and slightly blurred."""
        height, width = frame.shape[:2]
        target_w = min(self.settings.width, width)
        target_h = max(1, round(height * target_w / width))
        # Every n-th pixel first (a free view), so the area filter reads about four
        # pixels per output pixel instead of sixty at 720p: half the analysis cost.
        step = max(1, width // (target_w * 2))
        source = frame[::step, ::step] if step > 1 else frame
        small = cv2.resize(source, (target_w, target_h), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return np.asarray(cv2.GaussianBlur(grey, (5, 5), 0), dtype=np.uint8)

    def feed(self, frame: Image, at: float) -> Analysis:
        """Analyse one frame taken at `at` (monotonic seconds)."""
        grey = self.prepare(frame)
        same = self._previous is not None and _same_picture(self._previous, grey)
        self._previous = grey
        if not self.settings.enabled:
            return Analysis(0.0, False, same, False, False, False)
        if self._mask is None or self._mask.shape != grey.shape:
            self._mask = _build_mask(self.settings.masks, grey.shape)
            self._background = None
        if self._background is None:
            self._background = grey.astype(np.float32)
            return Analysis(0.0, False, same, False, False, False)

        background = self._background
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(background))
        changed = (diff > self.settings.threshold).astype(np.uint8)
        changed &= self._mask
        valid = max(int(self._mask.sum()), 1)
        changed_fraction = int(changed.sum()) / valid

        recalibrated = False
        if changed_fraction >= self.settings.global_change or self._settle > 0:
            # A lighting change: the old background no longer describes the scene.
            if changed_fraction >= self.settings.global_change:
                self._settle = SETTLE_FRAMES
                self.recalibrations += 1
            else:
                self._settle -= 1
            self._background = grey.astype(np.float32)
            recalibrated = True
            score = 0.0
        else:
            score = _largest_blob(changed) / valid
            # Learn slowly, and not where something moves, so a slow walker stays visible.
            cv2.accumulateWeighted(grey, background, self.settings.learning_rate, mask=1 - changed)
        moving = not recalibrated and score >= self.settings.min_area

        started = ended = False
        if moving:
            self._last_motion_at = at
            if not self._active:
                self._active = started = True
        elif self._active and at - self._last_motion_at >= self.settings.end_after_s:
            self._active = False
            ended = True
        return Analysis(score, moving, same, recalibrated, started, ended)

    @property
    def active(self) -> bool:
        return self._active


def _same_picture(a: Image, b: Image) -> bool:
    return a.shape == b.shape and int(cv2.absdiff(a, b).max()) <= FROZEN_TOLERANCE


def _largest_blob(changed: Image) -> int:
    # Opening removes single-pixel noise; connected components give the blobs' areas.
    opened = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count <= 1:
        return 0
    return int(stats[1:, cv2.CC_STAT_AREA].max())


def _build_mask(polygons: list[list[tuple[float, float]]], shape: tuple[int, ...]) -> Image:
    height, width = shape[:2]
    mask = np.ones((height, width), np.uint8)
    for polygon in polygons:
        corners = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in polygon])
        cv2.fillPoly(mask, [corners.astype(np.int32)], 0)
    return mask
