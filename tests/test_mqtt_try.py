"""`edgeagent mqtt try` for commissioning, and the profiles inside the built wheel."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.sparkplug_wire import M, payload

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, stdin: bytes = b"") -> tuple[int, list[dict[str, object]], str]:
    done = subprocess.run(
        [sys.executable, "-m", "edgeagent", "mqtt", "try", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return done.returncode, lines, done.stderr.decode()


def test_try_prints_one_json_object_per_reading() -> None:
    code, lines, _ = run(
        "zigbee2mqtt", "zigbee2mqtt/hall/sensor", '{"temperature": 21.5, "contact": true}'
    )
    assert code == 0
    assert [(d["sensorId"], d["value"], d["quality"]) for d in lines] == [
        ("hall/sensor/temperature", 21.5, "good"),
        ("hall/sensor/contact", True, "good"),
    ]
    assert all(d["timestamp"].endswith("Z") for d in lines)


def test_try_reads_payloads_from_a_file_and_standard_input(tmp_path: Path) -> None:
    body = tmp_path / "reading.txt"
    body.write_bytes(b"17,25 bar")
    code, lines, _ = run("plain", "sensors/p1/pressure", f"@{body}")
    assert code == 0 and lines[0]["value"] == 17.25 and lines[0]["unit"] == "bar"
    code, lines, _ = run("plain", "sensors/p1/pressure", "-", stdin=b"3")
    assert code == 0 and lines[0]["value"] == 3.0


def test_try_feeds_several_messages_so_a_birth_precedes_its_data(tmp_path: Path) -> None:
    birth = payload([M("Level", alias=4, datatype=10, value=1.0, unit="m")], seq=0)
    data = payload([M(alias=4, datatype=10, value=2.75)], seq=1, timestamp=1772366400000)
    messages = tmp_path / "messages.jsonl"
    messages.write_text(
        json.dumps({"topic": "spBv1.0/g/NBIRTH/n1", "payload_hex": birth.hex()})
        + "\n"
        + json.dumps(
            {"topic": "spBv1.0/g/NDATA/n1", "payload_base64": base64.b64encode(data).decode()}
        )
        + "\n"
    )
    code, lines, _ = run("sparkplug", "--messages", str(messages))
    assert code == 0
    assert lines[-1] == {
        "sensorId": "g/n1/Level",
        "value": 2.75,
        "unit": "m",
        "quality": "good",
        "timestamp": "2026-03-01T12:00:00.000Z",
    }


def test_try_reports_what_it_cannot_read() -> None:
    code, lines, err = run("json", "sensors/t1", "{not json")
    assert code == 1 and lines == [] and "undecodable: invalid JSON" in err
    code, _, err = run("json", "elsewhere/t1", "{}")
    assert code == 1 and "no rule" in err
    code, _, err = run("no-such-profile", "a", "1")
    assert code == 2 and "no profile 'no-such-profile'" in err and "zigbee2mqtt" in err
    code, _, err = run("json", "sensors/t1", "{}", "--var", "nope=1")
    assert code == 2 and "no variable 'nope'" in err


def test_the_wheel_carries_every_shipped_profile(tmp_path: Path) -> None:
    source = tmp_path / "src-copy"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "drivers", source / "drivers")
    shutil.copytree(
        REPO / "src", source / "src", symlinks=True, ignore=shutil.ignore_patterns("*.egg-info")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = (tmp_path / "dist").glob("edgeagent-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {
            Path(name).name: archive.read(name)
            for name in archive.namelist()
            if name.startswith("edgeagent/builtin_drivers/")
        }
    shipped = {p.name: p.read_bytes() for p in (REPO / "drivers").glob("*.yaml")}
    assert packed == shipped
