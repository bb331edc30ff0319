"""Device profiles: each shipped vendor profile fed payloads in that vendor's format."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgeagent.drivers.payloads import PayloadError
from edgeagent.drivers.profile_model import ProfileUse
from edgeagent.drivers.profiles import (
    Pattern,
    ProfileError,
    ProfileReading,
    ProfileSet,
    available,
    build,
    builtin_folder,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]
SHIPPED = {
    "esphome",
    "homeassistant",
    "json",
    "lineproto",
    "plain",
    "senml",
    "shelly",
    "sparkplug",
    "tasmota",
    "ttn",
    "zigbee2mqtt",
}


def profile(name: str, **overrides: Any) -> ProfileSet:
    return build([ProfileUse.model_validate({"profile": name, **overrides})], None)


def read(profiles: ProfileSet, topic: str, payload: bytes | str | dict[str, Any]) -> list[Any]:
    if isinstance(payload, dict | list):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    readings = profiles.decode(topic, payload, NOW)
    assert readings is not None, f"no rule took {topic}"
    return readings


def by_id(readings: list[ProfileReading]) -> dict[str, ProfileReading]:
    return {r.sensor_id: r for r in readings}


def test_every_shipped_profile_loads_and_the_package_carries_them() -> None:
    assert set(available(None)) == SHIPPED
    # The package's resource folder is the repository's drivers/ folder itself.
    assert builtin_folder().resolve() == (REPO / "drivers").resolve()
    for name in SHIPPED:
        assert len(profile(name)) >= 1


def test_patterns_capture_levels_and_subscribe_to_what_they_match() -> None:
    single = Pattern.compile("site/{device}/{field}")
    assert single.filter == "site/+/+"
    assert single.match("site/pump1/flow") == {"device": "pump1", "field": "flow"}
    assert single.match("site/pump1/flow/x") is None
    assert single.match("site//flow") == {"device": "", "field": "flow"}  # empty level
    many = Pattern.compile("z2m/{device+}")
    assert many.filter == "z2m/#"
    assert many.match("z2m/floor 1/kitchen/sensor") == {"device": "floor 1/kitchen/sensor"}
    assert many.match("z2m") is None
    rest = Pattern.compile("#")
    assert rest.match("a/b") == {}
    assert rest.match("$SYS/broker/uptime") is None
    assert Pattern.compile("+/status").match("$SYS/status") is None
    with pytest.raises(ProfileError):
        Pattern.compile("a/#/b")
    with pytest.raises(ProfileError):
        Pattern.compile("a/x{device}")


def test_zigbee2mqtt_names_with_slashes_units_from_bridge_devices() -> None:
    z2m = profile("zigbee2mqtt")
    devices = [
        {"friendly_name": "Coordinator", "type": "Coordinator"},
        {
            "friendly_name": "hall/climate",
            "definition": {
                "model": "WSDCGQ11LM",
                "exposes": [
                    {"type": "numeric", "property": "temperature", "unit": "°C"},
                    {"type": "numeric", "property": "humidity", "unit": "%"},
                    {"type": "numeric", "property": "pressure", "unit": "hPa"},
                    {"type": "numeric", "property": "linkquality", "unit": "lqi"},
                ],
            },
        },
        {
            "friendly_name": "plug",
            "definition": {
                "exposes": [
                    {
                        "type": "switch",
                        "features": [{"type": "binary", "property": "state"}],
                    },
                    {"type": "numeric", "property": "power", "unit": "W"},
                ]
            },
        },
    ]
    assert read(z2m, "zigbee2mqtt/bridge/devices", json.dumps(devices)) == []
    state = {
        "battery": 91,
        "humidity": 55.03,
        "linkquality": 120,
        "pressure": 1008.4,
        "temperature": 21.35,
        "voltage": 2995,
        "last_seen": "2026-03-01T11:59:58+00:00",
        "update": {"state": "idle", "installed_version": 1},
    }
    readings = by_id(read(z2m, "zigbee2mqtt/hall/climate", state))
    assert readings["hall/climate/temperature"].value == 21.35
    assert readings["hall/climate/temperature"].unit == "°C"
    assert readings["hall/climate/pressure"].unit == "hPa"
    assert readings["hall/climate/battery"].unit is None  # no expose names it
    assert "hall/climate/last_seen" not in readings
    assert not any(key.startswith("hall/climate/update") for key in readings)
    plug = by_id(read(z2m, "zigbee2mqtt/plug", {"state": "ON", "power": 12.5}))
    assert plug["plug/state"].value is True
    assert plug["plug/power"].unit == "W"
    # Commands, availability and the bridge's own topics make no readings.
    for topic in (
        "zigbee2mqtt/plug/set",
        "zigbee2mqtt/plug/availability",
        "zigbee2mqtt/bridge/state",
    ):
        assert z2m.decode(topic, b'{"state":"online"}', NOW) is None


def test_zigbee2mqtt_base_topic_is_a_site_override() -> None:
    z2m = profile("zigbee2mqtt", vars={"base": "zb/site1"})
    assert "zb/site1/#" in z2m.filters()
    assert read(z2m, "zb/site1/door", {"contact": False})[0].value is False


def test_tasmota_sensor_state_and_power_in_local_time() -> None:
    tasmota = profile("tasmota", vars={"zone": "Europe/Berlin"})
    sensor = {
        "Time": "2026-03-01T13:00:00",
        "ENERGY": {
            "TotalStartTime": "2025-10-01T10:00:00",
            "Total": 12.345,
            "Yesterday": 0.5,
            "Today": 0.2,
            "Power": 45,
            "Voltage": 231,
            "Current": 0.195,
        },
        "AM2301": {"Temperature": 21.3, "Humidity": 45.2, "DewPoint": 9.1},
        "TempUnit": "C",
    }
    readings = by_id(read(tasmota, "tele/kitchen-plug/SENSOR", sensor))
    power = readings["kitchen-plug/ENERGY.Power"]
    assert (power.value, power.unit) == (45.0, "W")
    # 13:00 in Berlin in March is 12:00 UTC.
    assert power.timestamp == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert readings["kitchen-plug/AM2301.Temperature"].unit == "°C"
    assert "kitchen-plug/TempUnit" not in readings
    assert "kitchen-plug/ENERGY.TotalStartTime" not in readings
    state = {
        "Time": "2026-03-01T13:00:05",
        "Uptime": "0T01:02:03",
        "Heap": 25,
        "POWER": "ON",
        "Wifi": {"AP": 1, "SSId": "site", "RSSI": 76, "Signal": -62},
    }
    readings = by_id(read(tasmota, "tele/kitchen-plug/STATE", state))
    assert set(readings) == {
        "kitchen-plug/POWER",
        "kitchen-plug/Wifi.RSSI",
        "kitchen-plug/Wifi.Signal",
    }
    assert readings["kitchen-plug/POWER"].value is True
    assert read(tasmota, "stat/kitchen-plug/POWER2", "OFF")[0].value is False
    assert read(tasmota, "stat/kitchen-plug/RESULT", '{"POWER":"OFF"}') == []


def test_tasmota_local_time_needs_a_known_zone() -> None:
    with pytest.raises(ProfileError, match="zone"):
        profile("tasmota", vars={"zone": "Mars/Olympus"})


def test_shelly_gen1_and_gen2() -> None:
    shelly = profile("shelly")
    assert read(shelly, "shellies/shelly1pm-A1B2C3/relay/0", "on")[0].value is True
    power = read(shelly, "shellies/shelly1pm-A1B2C3/relay/0/power", "53.27")[0]
    assert (power.sensor_id, power.value, power.unit) == (
        "shelly1pm-A1B2C3/relay0.power",
        53.27,
        "W",
    )
    energy = read(shelly, "shellies/shelly1pm-A1B2C3/relay/0/energy", "600")[0]
    assert energy.value == pytest.approx(10.0)  # watt-minutes to Wh
    assert energy.unit == "Wh"
    ht = read(shelly, "shellies/shellyht-0A1B2C/sensor/temperature", "19.75")[0]
    assert (ht.sensor_id, ht.unit) == ("shellyht-0A1B2C/temperature", "°C")
    status = {
        "id": 0,
        "source": "init",
        "output": True,
        "apower": 8.9,
        "voltage": 237.5,
        "current": 0.05,
        "aenergy": {"total": 6.532, "by_minute": [45.9, 0, 0], "minute_ts": 1654511472},
        "temperature": {"tC": 36.8, "tF": 98.2},
    }
    readings = by_id(read(shelly, "shellyplus1pm-441793/status/switch:0", status))
    assert readings["shellyplus1pm-441793/switch:0.apower"].unit == "W"
    assert readings["shellyplus1pm-441793/switch:0.aenergy.total"].unit == "Wh"
    assert readings["shellyplus1pm-441793/switch:0.temperature.tC"].value == 36.8
    assert readings["shellyplus1pm-441793/switch:0.output"].value is True
    assert "shellyplus1pm-441793/switch:0.id" not in readings
    notify = {
        "src": "shellyplus1pm-441793",
        "dst": "shellyplus1pm-441793/events",
        "method": "NotifyStatus",
        "params": {"ts": 1772366400.25, "switch:0": {"id": 0, "apower": 9.5}},
    }
    event = read(shelly, "shellyplus1pm-441793/events/rpc", notify)
    assert [(r.sensor_id, r.value) for r in event] == [
        ("shellyplus1pm-441793/switch:0.apower", 9.5)
    ]
    assert event[0].timestamp == datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def test_esphome_states() -> None:
    esphome = profile("esphome")
    reading = read(esphome, "pump-house/sensor/water_temperature/state", "12.6")[0]
    assert (reading.sensor_id, reading.value) == ("pump-house/water_temperature", 12.6)
    assert read(esphome, "pump-house/binary_sensor/door/state", "OFF")[0].value is False
    assert read(esphome, "pump-house/text_sensor/mode/state", "auto")[0].value == "auto"
    nan = read(esphome, "pump-house/sensor/water_temperature/state", "nan")[0]
    assert (nan.quality, nan.value) == ("bad", "nan")


def test_home_assistant_discovery_announces_state_topics_and_units() -> None:
    ha = profile("homeassistant")
    config = {
        "name": "Boiler temperature",
        "~": "esp-boiler",
        "stat_t": "~/sensor/boiler_temperature/state",
        "unit_of_meas": "°C",
        "dev_cla": "temperature",
        "uniq_id": "esp-boiler-t",
    }
    assert read(ha, "homeassistant/sensor/esp-boiler/boiler_t/config", config) == []
    assert ha.take_new_filters() == ["esp-boiler/sensor/boiler_temperature/state"]
    reading = read(ha, "esp-boiler/sensor/boiler_temperature/state", "61.5")[0]
    assert (reading.sensor_id, reading.value, reading.unit) == ("esp-boiler/boiler_t", 61.5, "°C")
    json_config = {
        "state_topic": "weather/station1",
        "unit_of_measurement": "km/h",
        "value_template": "{{ value_json.wind['speed'] | float }}",
    }
    read(ha, "homeassistant/sensor/wind_speed/config", json_config)
    reading = read(ha, "weather/station1", {"wind": {"speed": 14.2}})[0]
    assert (reading.sensor_id, reading.value, reading.unit) == ("wind_speed", 14.2, "km/h")
    unavailable = read(ha, "esp-boiler/sensor/boiler_temperature/state", "unavailable")[0]
    assert (unavailable.quality, unavailable.value) == ("bad", "unavailable")
    assert "weather/station1" in ha.filters()
    with pytest.raises(PayloadError, match="state_topic"):
        read(ha, "homeassistant/sensor/broken/config", {"name": "no topic"})


def test_senml_base_values_and_relative_times() -> None:
    senml = profile("senml")
    pack = [
        {
            "bn": "urn:dev:ow:10e2073a01080063:",
            "bt": 1.772366400e9,
            "bu": "Cel",
            "n": "temp",
            "v": 23.1,
        },
        {"n": "temp", "t": 60, "v": 23.4},
        {"n": "door", "vb": True},
        {"n": "humidity", "u": "%RH", "v": 41},
    ]
    readings = read(senml, "senml/site1/node7", pack)
    assert [r.sensor_id for r in readings] == [
        "urn:dev:ow:10e2073a01080063:temp",
        "urn:dev:ow:10e2073a01080063:temp",
        "urn:dev:ow:10e2073a01080063:door",
        "urn:dev:ow:10e2073a01080063:humidity",
    ]
    assert readings[0].timestamp == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert readings[1].timestamp == datetime(2026, 3, 1, 12, 1, tzinfo=UTC)
    assert readings[0].unit == "Cel" and readings[3].unit == "%RH"
    assert readings[2].value is True
    relative = read(senml, "senml/x", [{"n": "flow", "u": "l/s", "v": 2.5, "t": -30}])[0]
    assert relative.timestamp == datetime(2026, 3, 1, 11, 59, 30, tzinfo=UTC)
    with pytest.raises(PayloadError):
        read(senml, "senml/x", '{"n": "flow"')


def test_ttn_v3_uplink() -> None:
    ttn = profile("ttn")
    uplink = {
        "end_device_ids": {
            "device_id": "soil-probe-3",
            "application_ids": {"application_id": "farm"},
            "dev_eui": "70B3D57ED005A1B2",
        },
        "received_at": "2026-03-01T12:00:01.123456789Z",
        "uplink_message": {
            "f_port": 2,
            "frm_payload": "AQIDBA==",
            "decoded_payload": {"moisture": 31.5, "soil_temp": "8,5", "battery_ok": True},
            "rx_metadata": [{"gateway_ids": {"gateway_id": "gw1"}, "rssi": -97, "snr": 7.5}],
            "received_at": "2026-03-01T12:00:00.987654321Z",
        },
    }
    readings = by_id(read(ttn, "v3/farm@ttn/devices/soil-probe-3/up", uplink))
    assert set(readings) == {
        "soil-probe-3/moisture",
        "soil-probe-3/soil_temp",
        "soil-probe-3/battery_ok",
    }
    assert readings["soil-probe-3/soil_temp"].value == 8.5  # decimal comma
    assert readings["soil-probe-3/moisture"].timestamp == datetime(
        2026, 3, 1, 12, 0, 0, 987654, tzinfo=UTC
    )


def test_line_protocol_fields_tags_and_precision() -> None:
    lines = profile("lineproto")
    text = (
        "# a comment\n"
        'weather,site=north\\ yard,host=ws1 temp=21.5,hum=40i,ok=t,note="fine, dry" '
        "1772366400000000000\n"
        "pump,host=p1 running=false\n"
    )
    readings = read(lines, "telegraf/ws1", text)
    got = [(r.sensor_id, r.value, r.timestamp) for r in readings]
    assert got[0] == ("weather/temp", 21.5, datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    assert got[1][:2] == ("weather/hum", 40.0)
    assert got[2][:2] == ("weather/ok", True)
    assert ("pump/running", False, None) in got
    # A quoted field is text by the protocol's typing: kept as a state.
    assert by_id(readings)["weather/note"].value == "fine, dry"
    seconds = profile("lineproto", vars={"precision": "s"}, sensor="{tag.host}/{field}")
    reading = read(seconds, "telegraf/x", "cpu,host=gw usage=3.5 1772366400")[0]
    assert reading.sensor_id == "gw/usage"
    assert reading.timestamp == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for broken in ("cpu", "cpu usage", 'cpu note="open', "cpu usage=abc", "cpu x=1 12ab"):
        with pytest.raises(PayloadError):
            read(lines, "telegraf/x", broken)


def test_plain_and_json_profiles_read_awkward_values() -> None:
    plain = profile("plain")
    cases = {
        "42.5": (42.5, None, "good"),
        " 21,5 °C ": (21.5, "°C", "good"),
        "75%": (75.0, "%", "good"),
        "-1.5e1 kPa": (-15.0, "kPa", "good"),
        "ON": (True, None, "good"),
        "unknown": ("unknown", None, "bad"),
        "unavailable": ("unavailable", None, "bad"),
        "NaN": ("NaN", None, "bad"),
        "": ("empty", None, "bad"),
    }
    for payload, (value, unit, quality) in cases.items():
        reading = read(plain, "sensors/pump1/pressure", payload)[0]
        assert (reading.value, reading.unit, reading.quality) == (value, unit, quality), payload
    with pytest.raises(PayloadError, match="UTF-8"):
        read(plain, "sensors/pump1/pressure", b"\xff\xfe1")
    with pytest.raises(PayloadError, match="not a number"):
        read(plain, "sensors/pump1/pressure", "open the valve")
    as_json = profile("json")
    readings = by_id(read(as_json, "sensors/tank1", {"level": 3.2, "ts": 1772366400123}))
    assert readings["tank1/level"].timestamp == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    for broken in (b"{", b"", b"\xc3\x28", b"[1, 2]"):
        with pytest.raises(PayloadError):
            read(as_json, "sensors/tank1", broken)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (1772366400, datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        (1772366400123, datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)),
        (1772366400123456, datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        (1772366400123456789, datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-01T13:00:00+01:00", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_in_every_unit(stamp: Any, expected: datetime) -> None:
    reading = read(profile("json"), "sensors/tank1", {"level": 1, "ts": stamp})[0]
    assert reading.timestamp == expected


def test_site_overrides_fields_and_sensor_names() -> None:
    z2m = profile(
        "zigbee2mqtt",
        sensor="zb.{device}.{field}",
        fields={
            "temperature": {"name": "t", "scale": 1.8, "offset": 32, "unit": "°F"},
            "battery": {"skip": True},
        },
    )
    readings = by_id(read(z2m, "zigbee2mqtt/probe", {"temperature": 20, "battery": 80}))
    assert set(readings) == {"zb.probe.t"}
    assert readings["zb.probe.t"].value == pytest.approx(68.0)
    assert readings["zb.probe.t"].unit == "°F"


def test_profile_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no profile 'nope'"):
        profile("nope")
    with pytest.raises(ProfileError, match="no variable 'bse'"):
        profile("zigbee2mqtt", vars={"bse": "x"})
    with pytest.raises(ProfileError, match="never captured"):
        profile("plain", sensor="{room}/{field}")
    (tmp_path / "broken.yaml").write_text("rules:\n  - topic: a/{x}\n    fromat: json\n")
    with pytest.raises(ProfileError, match="fromat"):
        build([ProfileUse.model_validate({"profile": "broken"})], tmp_path)
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        build([ProfileUse.model_validate({"profile": "bad"})], tmp_path)
    with pytest.raises(ProfileError, match="plain file name"):
        profile("../etc/passwd")


def test_a_site_profile_wins_over_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "plain.yaml").write_text(
        "rules:\n  - topic: 'plant/{device}/{field}'\n    sensor: 'site.{device}.{field}'\n"
    )
    own = build([ProfileUse.model_validate({"profile": "plain"})], tmp_path)
    assert read(own, "plant/p1/flow", "3")[0].sensor_id == "site.p1.flow"
    assert own.decode("sensors/p1/flow", b"3", NOW) is None


def test_check_config_names_the_profile_that_does_not_load(tmp_path: Path) -> None:
    from edgeagent.configfile import load_settings, review

    path = tmp_path / "edgeagent.yaml"
    path.write_text(
        "gateway: {id: gw1}\n"
        "mqtt:\n"
        f"  profiles_dir: {tmp_path}\n"
        "  profiles:\n"
        "    - profile: plain\n"
        "    - profile: zigbee2mqtt\n"
        "      vars: {bse: z2m}\n",
        encoding="utf-8",
    )
    problems, _ = review(path, load_settings(path))
    assert [(p.path, p.where) for p in problems] == [("mqtt.profiles[1]", f"{path}:6")]
    assert "no variable 'bse'" in problems[0].message
