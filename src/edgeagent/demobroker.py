"""An embedded MQTT broker for the demo on machines without mosquitto (needs the demo extra)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any


async def _serve(port: int) -> None:
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise SystemExit(
            "no mosquitto on the PATH and amqtt is not installed: pip install 'edgeagent[demo]'"
        ) from exc
    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    # The demo checks the port with a bare connect; amqtt would log each as an error.
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    broker = Broker(config)
    await broker.start()
    await asyncio.Event().wait()


def main() -> int:
    asyncio.run(_serve(int(sys.argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
