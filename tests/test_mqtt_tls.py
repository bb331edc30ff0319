"""The MQTT driver over verified TLS with a client certificate and a password, against a
real mosquitto whose certificates the test makes with openssl."""

from __future__ import annotations

import getpass
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from edgeagent.clock import SystemClock
from edgeagent.drivers.base import DeviceHealth
from edgeagent.drivers.mqtt import MqttDriver
from edgeagent.settings import MqttSettings
from tests.conftest import free_port, wait_port
from tests.test_mqtt_driver import HoldingSink, eventually, start, stop

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
    reason="openssl and mosquitto_passwd come with the system packages `make sysdeps` installs",
)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def authority(folder: Path, name: str) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-subj",
        f"/CN={name}",
        cwd=folder,
    )


def issue(folder: Path, ca: str, name: str, extension: str) -> None:
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=folder,
    )
    (folder / f"{name}.ext").write_text(extension)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        f"{name}.pem",
        "-extfile",
        f"{name}.ext",
        cwd=folder,
    )


class TlsBroker:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        authority(folder, "ca")
        authority(folder, "other-ca")
        issue(folder, "ca", "broker", "subjectAltName=IP:127.0.0.1\n")
        issue(folder, "ca", "gateway", "extendedKeyUsage=clientAuth\n")
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(folder / "passwords"), "gateway", "s3cret"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {folder / 'ca.pem'}\ncertfile {folder / 'broker.pem'}\n"
            f"keyfile {folder / 'broker.key'}\nrequire_certificate true\n"
            f"allow_anonymous false\npassword_file {folder / 'passwords'}\n"
            # Started as root, mosquitto would become its own user, who cannot read
            # the test's private folder.
            f"user {getpass.getuser()}\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with (folder / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(conf)], stderr=log)
        wait_port(self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    broker = TlsBroker(tmp_path)
    yield broker
    broker.stop()


def driver(
    broker: TlsBroker, ca: str, password: str, prefix: str
) -> tuple[MqttDriver, HoldingSink]:
    folder = broker.folder
    settings = MqttSettings.model_validate(
        {
            "port": broker.port,
            "client_id": f"c-{prefix}-{ca}",
            "username": "gateway",
            "reconnect_max_s": 1,
            "tls": {
                "ca_file": str(folder / f"{ca}.pem"),
                "cert_file": str(folder / "gateway.pem"),
                "key_file": str(folder / "gateway.key"),
            },
            "profiles": [{"profile": "plain", "vars": {"base": f"{prefix}/plain"}}],
        }
    )
    sink = HoldingSink()
    made = MqttDriver(settings, "gw", password, sink, DeviceHealth("mqtt", "mqtt"), SystemClock())
    return made, sink


async def test_verified_tls_with_client_certificate_and_password(
    tls_broker: TlsBroker, topic_prefix: str
) -> None:
    mqtt, sink = driver(tls_broker, "ca", "s3cret", topic_prefix)
    task = start(mqtt)
    await eventually(lambda: mqtt.health.status == "online")
    import ssl

    context = ssl.create_default_context(cafile=str(tls_broker.folder / "ca.pem"))
    context.load_cert_chain(
        str(tls_broker.folder / "gateway.pem"), str(tls_broker.folder / "gateway.key")
    )
    async with aiomqtt.Client(
        "127.0.0.1",
        tls_broker.port,
        username="gateway",
        password="s3cret",
        tls_context=context,
    ) as client:
        await client.publish(f"{topic_prefix}/plain/boiler/temp", b"61.5", qos=1)
    await eventually(lambda: len(sink.events) == 1)
    sink.commit()
    await stop(task)
    assert sink.events[0].data["value"] == 61.5


# paho leaves the socket of a failed TLS handshake to the garbage collector, which closes
# it with a ResourceWarning; the driver never holds it.
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(("ca", "password"), [("other-ca", "s3cret"), ("ca", "wrong")])
async def test_an_unverified_broker_or_a_wrong_password_stays_offline(
    tls_broker: TlsBroker, topic_prefix: str, ca: str, password: str
) -> None:
    mqtt, sink = driver(tls_broker, ca, password, topic_prefix)
    mqtt.health.status = "online"
    task = start(mqtt)
    await eventually(lambda: mqtt.health.status == "offline")
    await stop(task)
    assert "s3cret" not in (mqtt.health.reason or "")
    assert [e.data["newStatus"] for e in sink.statuses] == ["offline"]
