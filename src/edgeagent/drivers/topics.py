"""MQTT topic filters: matching a topic and naming the sensor from its levels."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"\{(\d+)\}")


class TopicFilterError(ValueError):
    """A topic filter or sensor template is malformed."""


@dataclass(frozen=True)
class TopicMap:
    """A topic filter and the template that names a sensor from the levels it matched."""

    filter: str
    template: str
    _levels: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = self.filter.split("/")
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != len(levels) - 1):
                raise TopicFilterError(f"'#' must be a whole last level in {self.filter!r}")
            if "+" in level and level != "+":
                raise TopicFilterError(f"'+' must be a whole level in {self.filter!r}")
        # Split once: matching runs for every message.
        object.__setattr__(self, "_levels", tuple(levels))
        wildcards = levels.count("+")
        for number in _PLACEHOLDER.findall(self.template):
            if not 1 <= int(number) <= wildcards:
                raise TopicFilterError(
                    f"{{{number}}} in {self.template!r} names no '+' level of {self.filter!r}"
                )

    def match(self, topic: str) -> list[str] | None:
        """The levels matched by each '+' (and the rest under '#'), or None if no match."""
        wanted = self._levels
        given = topic.split("/")
        matched: list[str] = []
        for index, level in enumerate(wanted):
            if level == "#":
                # MQTT: '#' does not match topics starting with '$' at the first level.
                if index == 0 and topic.startswith("$"):
                    return None
                return matched
            if index >= len(given):
                return None
            if level == "+":
                if index == 0 and given[0].startswith("$"):
                    return None
                matched.append(given[index])
            elif level != given[index]:
                return None
        return matched if len(given) == len(wanted) else None

    def name(self, matched: list[str]) -> str:
        return _PLACEHOLDER.sub(lambda m: matched[int(m.group(1)) - 1], self.template)
