"""The shape of a device profile and of a site's use of one, as YAML gives them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TimeFormat = Literal["auto", "s", "ms", "us", "ns", "rfc3339", "local"]


class _Strict(BaseModel):
    # A typo in a profile must fail loudly, as it does in the site config.
    model_config = ConfigDict(extra="forbid")


class FieldOptions(_Strict):
    """How one payload field (or all fields matching a glob) becomes a reading."""

    name: str | None = Field(None, description="Reading name used for {field}; default the path")
    unit: str | None = Field(None, description="Fixed unit")
    unit_field: str | None = Field(None, description="Dotted path of the unit in the payload")
    scale: float = Field(1.0, description="Multiplier applied to numbers")
    offset: float = Field(0.0, description="Added to numbers after scaling")
    discrete: bool = Field(False, description="Keep text states (e.g. 'single') as strings")
    skip: bool = Field(False, description="Make no reading of this field")


class TimeOptions(_Strict):
    field: str = Field(description="Dotted path of the reading's time in the payload")
    format: TimeFormat = Field("auto", description="auto, s, ms, us, ns, rfc3339 or local")
    zone: str | None = Field(None, description="IANA zone of local times, e.g. Europe/Berlin")


class QualityOptions(_Strict):
    field: str = Field(description="Dotted path of the quality flag in the payload")
    good: list[str | int | bool] = Field(default_factory=list, description="Good values")
    uncertain: list[str | int | bool] = Field(
        default_factory=list, description="Uncertain values; any other is bad"
    )


class Rule(_Strict):
    """Topics of one kind and how their payloads map to readings."""

    topic: str = Field(description="Pattern: {name} one level, {name+} one or more, # the rest")
    exclude: list[str] = Field(default_factory=list, description="Patterns this rule skips")
    format: Literal["text", "json", "senml", "line", "sparkplug"] = Field(
        "text", description="Payload format"
    )
    sensor: str = Field(
        "{device}/{field}", description="Sensor id template from captures and {field}"
    )
    field: str | None = Field(
        None, description="{field} of a single-value payload; default the last path part"
    )
    value: str | None = Field(None, description="JSON: dotted path of a single value")
    root: str | None = Field(None, description="JSON: dotted path of the object to read")
    fields: dict[str, FieldOptions] = Field(
        default_factory=dict, description="Field glob to options; the first match applies"
    )
    only_listed: bool = Field(False, description="Skip fields no glob in 'fields' matches")
    unit: str | None = Field(None, description="Unit when neither payload nor field gives one")
    discrete: bool = Field(False, description="Text states of this rule's values are kept")
    time: TimeOptions | None = Field(None, description="Where the reading's time is")
    quality: QualityOptions | None = Field(None, description="Where the quality flag is")
    metadata: Literal["zigbee2mqtt_devices", "homeassistant_discovery"] | None = Field(
        None, description="This topic carries units and names, not readings"
    )


class Profile(_Strict):
    description: str = Field("", description="What devices this profile reads")
    vars: dict[str, str] = Field(
        default_factory=dict, description="Defaults of ${name} variables a site may override"
    )
    states: dict[str, bool] = Field(
        default_factory=dict, description="Extra switch words, lower case, to true/false"
    )
    rules: list[Rule] = Field(min_length=1, description="Tried in order; the first match wins")


class ProfileUse(_Strict):
    """A site's use of a profile, with what it overrides."""

    profile: str = Field(description="Profile name: a file NAME.yaml in the profile folders")
    vars: dict[str, str] = Field(default_factory=dict, description="Values of ${name} variables")
    sensor: str | None = Field(None, description="Sensor id template for every rule")
    fields: dict[str, FieldOptions] = Field(
        default_factory=dict, description="Field options tried before the profile's own"
    )
    external_id: str | None = Field(
        None, description="Platform id template (default GATEWAY_ID/SENSOR)"
    )
