"""An alarm's condition flags, from which its ISA 18.2 state follows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NORMAL = "normal"
UNACKNOWLEDGED = "unacknowledged"
ACKNOWLEDGED = "acknowledged"
RETURNED_UNACKNOWLEDGED = "returned_unacknowledged"
LATCHED_UNACKNOWLEDGED = "latched_unacknowledged"
LATCHED_ACKNOWLEDGED = "latched_acknowledged"
SHELVED = "shelved"
SUPPRESSED = "suppressed"
OUT_OF_SERVICE = "out_of_service"


@dataclass
class AlarmState:
    """The flags ISA 18.2 treats as independent; `state` is derived, never stored alone.

    `acknowledged` is True in normal so that a fresh alarm needs no acknowledgement.
    Stored as JSON beside the events it emitted; fields added since the first release
    default so that a state saved by it still loads.
    """

    active: bool = False
    acknowledged: bool = True
    occurrence_id: str | None = None
    value: Any = None
    source_time: str | None = None
    changed_at: str | None = None
    latched: bool = False
    shelved: bool = False
    shelve_one_shot: bool = False
    # Elapsed seconds a timed shelve still has to run, as of the last commit.
    shelve_left_s: float | None = None
    suppressed: bool = False
    out_of_service: bool = False
    active_since: str | None = None

    @property
    def state(self) -> str:
        if self.out_of_service:
            return OUT_OF_SERVICE
        if self.shelved:
            return SHELVED
        if self.suppressed:
            return SUPPRESSED
        if self.active:
            return ACKNOWLEDGED if self.acknowledged else UNACKNOWLEDGED
        if self.latched:
            return LATCHED_ACKNOWLEDGED if self.acknowledged else LATCHED_UNACKNOWLEDGED
        return NORMAL if self.acknowledged else RETURNED_UNACKNOWLEDGED

    @property
    def hidden(self) -> bool:
        """Evaluated and journaled, but not annunciated to the operator."""
        return self.out_of_service or self.shelved or self.suppressed

    def flags(self) -> dict[str, bool]:
        return {
            "active": self.active,
            "acknowledged": self.acknowledged,
            "latched": self.latched,
            "shelved": self.shelved,
            "suppressed": self.suppressed,
            "outOfService": self.out_of_service,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlarmState:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
