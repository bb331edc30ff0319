"""The README's configuration reference and the models never disagree."""

from __future__ import annotations

import json

import pytest

from edgeagent.configfile import json_schema_text
from edgeagent.reference import END, START, ReferenceError, markdown, update
from tests.conftest import REPO


def test_readme_reference_is_what_the_models_say() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert update(readme) == readme, "run `make reference` and commit README.md"


def test_reference_names_every_option_of_the_schema() -> None:
    table = markdown()
    schema = json.loads(json_schema_text())
    # A secret's own keys are named in its type: `{file}` or `{credential}`.
    shown = [d for name, d in schema["$defs"].items() if name != "SecretRef"]
    for definition in [schema, *shown]:
        for key in definition.get("properties", {}):
            assert f".{key}`" in table or f"`{key}`" in table, key
    assert "| `mqtt.sensors[].topic` |" in table
    assert "| `platform.api_key` | secret: `{file}` or `{credential}` (optional) |" in table


def test_a_readme_without_markers_is_a_clear_error() -> None:
    with pytest.raises(ReferenceError, match="markers"):
        update("# no reference here\n")
    with pytest.raises(ReferenceError):
        update(f"{END}\n{START}\n")
