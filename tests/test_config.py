"""The configuration file: every error at once with its line, env overrides, secrets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeagent.configfile import ConfigError, json_schema_text, load_settings, review
from edgeagent.settings import SecretError, SecretRef

REPO = Path(__file__).resolve().parents[1]

BROKEN = """\
gateway:
  id: "bad id!"
platform:
  timeout_s: -1
  bogus: 3
gnss:
  - id: g1
    baudrate: fast
alarms:
  - id: a1
    sensor: s
    type: highest
    limit: 5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeagent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_error_is_reported_with_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    found = {(p.where, p.path) for p in caught.value.problems}
    assert found == {
        (f"{path}:2", "gateway.id"),
        (f"{path}:4", "platform.timeout_s"),
        (f"{path}:5", "platform.bogus"),
        (f"{path}:7", "gnss[0].port"),
        (f"{path}:8", "gnss[0].baudrate"),
        (f"{path}:12", "alarms[0].type"),
    }
    assert any("unknown key" in p.message for p in caught.value.problems)
    assert any("'fast'" in p.message for p in caught.value.problems)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  id: x\n  bad: [1, 2\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0].where.startswith(f"{path}:")
    assert "invalid YAML" in caught.value.problems[0].message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n"], ids=["list", "scalar"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, text))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "platform:\n  base_url: http://127.0.0.1:1\nuplink:\n  linger_s: 2\n")
    monkeypatch.setenv("EDGEAGENT_PLATFORM__BASE_URL", "http://127.0.0.1:2")
    settings = load_settings(path)
    assert settings.platform.base_url == "http://127.0.0.1:2"
    assert settings.uplink.linger_s == 2


def test_a_bad_override_is_named_by_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEAGENT_UPLINK__BATCH_MAX_EVENTS", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "gateway:\n  id: gw\n"))
    assert caught.value.problems[0].where == "EDGEAGENT_UPLINK__BATCH_MAX_EVENTS"


def test_secrets_come_from_files_or_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text("s3cret\n")
    assert SecretRef(file=tmp_path / "key").read() == b"s3cret"  # type: ignore[call-arg]
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert SecretRef(credential="key").read() == b"s3cret"  # type: ignore[call-arg]
    with pytest.raises(SecretError, match="cannot read"):
        SecretRef(file=tmp_path / "missing").read()  # type: ignore[call-arg]


def test_a_secret_cannot_be_written_into_the_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "platform:\n  api_key: hunter2\n"))
    assert caught.value.problems[0].path == "platform.api_key"
    assert "hunter2" not in str(caught.value)
    assert "never written here" in str(caught.value)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    text = "gnss:\n  - {id: g, port: /dev/a}\n  - {id: g, port: /dev/b}\n"
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize("name", ["example.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    settings = load_settings(REPO / "config" / name)
    assert settings.gateway.id


def test_example_documents_every_option() -> None:
    """Each key of the schema appears, with a comment, in config/example.yaml."""
    text = (REPO / "config" / "example.yaml").read_text()
    schema = json.loads(json_schema_text())
    keys: set[str] = set()
    for definition in [schema, *schema.get("$defs", {}).values()]:
        keys.update(definition.get("properties", {}))
    missing = sorted(k for k in keys if f"{k}:" not in text)
    assert missing == []


def test_schema_file_matches_the_models() -> None:
    committed = (REPO / "config" / "edgeagent.schema.json").read_text()
    assert committed == json_schema_text(), "run `make schema` and commit the result"


def test_check_config_command_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    result = subprocess.run(
        [sys.executable, "-m", "edgeagent", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "configuration has 6 problems" in result.stderr
    assert f"{path}:12: alarms[0].type" in result.stderr


def test_check_config_accepts_the_example_with_its_credentials(tmp_path: Path) -> None:
    for name in ("edgeagent-api-key", "edgeagent-signing-secret", "edgeagent-page-token"):
        (tmp_path / name).write_text("x" * 20 + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "edgeagent", "check-config", str(REPO / "config" / "example.yaml")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_reads_every_secret_and_reports_each_missing_one(tmp_path: Path) -> None:
    """A config that `run` cannot start with must not pass the unit's ExecStartPre check."""
    path = write(
        tmp_path,
        f"""\
platform:
  api_key: {{file: {tmp_path}/missing-key}}
  signing_secret: {{credential: signing}}
status:
  token: {{file: {tmp_path}/empty}}
""",
    )
    (tmp_path / "empty").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    result = subprocess.run(
        [sys.executable, "-m", "edgeagent", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 2
    assert f"{path}:2: platform.api_key: cannot read secret file" in result.stderr
    assert f"{path}:3: platform.signing_secret: credential 'signing'" in result.stderr
    assert f"{path}:5: status.token: secret {tmp_path}/empty is empty" in result.stderr


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("gateway: {id: gw}\n", "nothing to read"),
        ("gateway: {id: gw}\n", "operator actions are disabled"),
        (
            "mqtt:\n  sensors: [{topic: 'a/+/t', sensor: '{1}-temp'}]\n"
            "alarms: [{id: a1, sensor: tank-levle, type: high, limit: 1}]\n",
            "alarm a1 watches sensor 'tank-levle'",
        ),
        ("status: {listen: 0.0.0.0}\n", "reachable beyond this machine"),
        ("status: {listen: 0.0.0.0}\n", "in clear text"),
        ("status: {listen: 0.0.0.0}\n", "anyone who reaches the port can read the page"),
    ],
    ids=[
        "no-devices",
        "no-token",
        "alarm-on-unknown-sensor",
        "open-page",
        "open-page-without-tls",
        "open-page-without-view-token",
    ],
)
def test_check_config_warns_about_likely_mistakes(tmp_path: Path, text: str, warning: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgeagent", "check-config", str(write(tmp_path, text))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert warning in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("platform: {base_url: '127.0.0.1:8787'}\n", "must be an http(s) URL"),
        ("platform: {base_url: 'http://platform.example.com'}\n", "must use https://"),
        ("platform: {base_url: 'https://u:p@platform.example.com'}\n", "credentials"),
        ("gnss: [{id: mqtt, port: /dev/a}]\n", "reserved"),
        ("gnss: [{id: a, port: /dev/a}, {id: b, port: /dev/a}]\n", "two GNSS receivers"),
        ("gnss: [{id: a, port: /dev/a, baudrate: 1234}]\n", "baudrate"),
    ],
    ids=[
        "no-scheme",
        "plain-http-remote",
        "credentials-in-url",
        "reserved-id",
        "shared-port",
        "odd-baudrate",
    ],
)
def test_unsafe_or_impossible_settings_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(write(tmp_path, text))


def test_a_section_given_as_text_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, 'platform: "api_key=sk-live-123"\n'))
    assert "sk-live" not in str(caught.value)


def test_a_whole_section_from_the_environment_is_named_by_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEAGENT_PLATFORM", '{"timeout_s": -5}')
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "gateway: {id: gw}\n"))
    assert caught.value.problems[0].where == "EDGEAGENT_PLATFORM"


def test_a_list_from_the_environment_owns_its_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEAGENT_GNSS", '[{"id": "g1"}]')
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "gnss: [{id: x, port: /dev/x}]\n"))
    assert caught.value.problems[0].where == "EDGEAGENT_GNSS"
    assert caught.value.problems[0].path == "gnss[0].port"


def test_malformed_json_in_a_variable_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEAGENT_GNSS", '[{"id": "g1"')
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "gateway: {id: gw}\n"))
    assert caught.value.problems[0].where == "EDGEAGENT_GNSS"


def test_a_misspelt_variable_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEAGENT_UPLINK_BACKOFF_MAX_S", "5")
    path = write(tmp_path, "gateway: {id: gw}\n")
    _, warnings = review(path, load_settings(path))
    assert any("EDGEAGENT_UPLINK_BACKOFF_MAX_S" in w for w in warnings)
