"""The cameras' configuration models (plain pydantic: no video library needed to check it)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    # Resolved by `edgeagent.settings`, which defines it and rebuilds these models.
    from edgeagent.settings import SecretRef


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraOnvif(_Section):
    host: str = Field(description="The camera's ONVIF host (address or name)")
    port: int = Field(80, ge=1, le=65535, description="The camera's ONVIF HTTP port")
    username: str | None = Field(None, description="ONVIF user name")
    password: SecretRef | None = Field(None, description="ONVIF password (file or credential)")
    profile: str | None = Field(
        None, description="Media profile token to use (default: the camera's first)"
    )
    events: bool = Field(True, description="Subscribe to the camera's events (PullPoint)")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one ONVIF request")
    subscription_s: float = Field(
        120.0, ge=10, description="Lifetime asked for a PullPoint subscription; renewed early"
    )
    pull_timeout_s: float = Field(
        5.0, gt=0, le=60, description="How long one PullMessages call waits for events"
    )
    continuous_max_s: float = Field(
        10.0,
        gt=0,
        description="A continuous PTZ move is stopped after this long, even if the camera "
        "ignores its own timeout",
    )


class CameraMotion(_Section):
    enabled: bool = Field(True, description="Detect motion in the video")
    width: int = Field(160, ge=32, le=1920, description="Width the frame is scaled to")
    threshold: int = Field(
        25, ge=1, le=255, description="Grey-level difference that counts as changed"
    )
    min_area: float = Field(
        0.01, gt=0, le=1, description="Smallest moving blob, as a fraction of the picture"
    )
    global_change: float = Field(
        0.4,
        gt=0,
        le=1,
        description="A change over this fraction of the picture is lighting (a light switch, "
        "IR day/night), not motion: the background is taken afresh",
    )
    learning_rate: float = Field(
        0.05, gt=0, lt=1, description="How fast the background follows slow changes"
    )
    end_after_s: float = Field(
        5.0, gt=0, description="Seconds without motion before motion_end is sent"
    )
    masks: list[list[tuple[float, float]]] = Field(
        default_factory=list,
        description="Polygons ignored by motion detection, as [x, y] corner lists in "
        "fractions of the picture (0 to 1)",
    )

    @field_validator("masks")
    @classmethod
    def _masks_are_polygons(
        cls, masks: list[list[tuple[float, float]]]
    ) -> list[list[tuple[float, float]]]:
        for polygon in masks:
            if len(polygon) < 3:
                raise ValueError("a mask needs at least three corners")
            for x, y in polygon:
                if not (0 <= x <= 1 and 0 <= y <= 1):
                    raise ValueError("mask corners are fractions of the picture, 0 to 1")
        return masks


class CameraSnapshots(_Section):
    dir: Path | None = Field(
        None, description="Folder of the JPEG snapshots (default: DATA_DIR/snapshots/ID)"
    )
    keep: int = Field(200, ge=1, description="Most snapshots kept; oldest deleted first")
    max_bytes: int = Field(
        50 * 1024 * 1024, ge=64 * 1024, description="Most bytes of snapshots kept"
    )
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of snapshots")
    interval_s: float = Field(
        60.0, gt=0, description="A fresh snapshot for the status page at least this often"
    )


class CameraDevice(_Section):
    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$", description="Camera id (event source)"
    )
    name: str | None = Field(None, description="Display name (default: the id)")
    source: str | None = Field(
        None,
        description="Video: rtsp://, http(s):// (MJPEG) or a file path; default: the "
        "ONVIF profile's stream URI",
    )
    onvif: CameraOnvif | None = Field(None, description="ONVIF control and events")
    external_id: str | None = Field(None, description="Platform id (default GATEWAY_ID/ID)")
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP transport; TCP survives lossy links without smeared frames"
    )
    open_timeout_s: float = Field(10.0, gt=0, description="Timeout of opening the stream")
    read_timeout_s: float = Field(5.0, gt=0, description="Timeout of reading one frame")
    lost_after_s: float = Field(
        3.0,
        gt=0,
        description="The stream is lost after max(this, 5 frame intervals) without a frame",
    )
    frozen_after_s: float = Field(
        6.0, gt=0, description="Identical frames for this long: the picture is frozen"
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the reconnect delay")
    motion: CameraMotion = Field(default_factory=CameraMotion)  # type: ignore[arg-type]
    snapshots: CameraSnapshots = Field(default_factory=CameraSnapshots)  # type: ignore[arg-type]

    @field_validator("source")
    @classmethod
    def _source_kind(cls, source: str | None) -> str | None:
        if source is None or "://" not in source:
            return source
        parts = urlsplit(source)
        if parts.scheme not in ("rtsp", "rtsps", "http", "https", "file"):
            raise ValueError("must be rtsp://, http(s):// (MJPEG), file:// or a file path")
        if parts.password:
            raise ValueError("must not carry a password; give onvif.username and onvif.password")
        return source

    @model_validator(mode="after")
    def _has_video_or_control(self) -> CameraDevice:
        if self.source is None and self.onvif is None:
            raise ValueError("give a video 'source', or 'onvif' to ask the camera for it")
        return self


# Loading the main settings module resolves SecretRef in the models above (it rebuilds
# them), whichever of the two modules is imported first.
importlib.import_module("edgeagent.settings")
