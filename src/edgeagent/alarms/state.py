"""An alarm's condition flags, from which its ISA 18.2 state follows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NORMAL = "normal"
UNACKNOWLEDGED = "unacknowledged"
ACKNOWLEDGED = "acknowledged"
RETURNED_UNACKNOWLEDGED = "returned_unacknowledged"


@dataclass
class AlarmState:
    """The flags ISA 18.2 treats as independent; `state` is derived, never stored alone.

    `acknowledged` is True in normal so that a fresh alarm needs no acknowledgement.
    """

    active: bool = False
    acknowledged: bool = True
    occurrence_id: str | None = None
    value: float | None = None
    source_time: str | None = None
    changed_at: str | None = None

    @property
    def state(self) -> str:
        if self.active:
            return ACKNOWLEDGED if self.acknowledged else UNACKNOWLEDGED
        return NORMAL if self.acknowledged else RETURNED_UNACKNOWLEDGED

    def flags(self) -> dict[str, bool]:
        # The flags of later states are spelled out now so the platform sees one shape.
        return {
            "active": self.active,
            "acknowledged": self.acknowledged,
            "latched": False,
            "shelved": False,
            "suppressed": False,
            "outOfService": False,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlarmState:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
