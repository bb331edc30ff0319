"""Cameras: ONVIF control and events, motion from the video, and stream health.

Everything here but the configuration models needs the optional `cameras` extra
(OpenCV, numpy, onvif-zeep-async); `missing_extra()` says whether it is installed.
"""

from __future__ import annotations

import importlib.util

EXTRA_MODULES = ("cv2", "numpy", "onvif")


def missing_extra() -> list[str]:
    """The modules of the `cameras` extra that cannot be imported here."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
