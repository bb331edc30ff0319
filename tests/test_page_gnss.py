"""A receiver's fixes reach the page: position, satellites and the track, from a
recorded log replayed on a real pseudo-terminal through the running daemon."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from edgeagent.daemon import Daemon
from edgeagent.replay import PtyPort, replay_log
from edgeagent.settings import Settings


async def test_fixes_from_a_replayed_receiver_show_as_fix_and_track(
    tmp_path: Path, nmea_dir: Path
) -> None:
    link = tmp_path / "gnss0"
    settings = Settings.model_validate(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path / "data")},
            "platform": {"base_url": "http://127.0.0.1:9"},
            "status": {"port": 0},
            "gnss": [{"id": "rover", "port": str(link), "reopen_max_s": 0.2}],
        }
    )
    stop = asyncio.Event()
    with PtyPort(link) as port:
        agent = Daemon(settings)
        task = asyncio.create_task(agent.run())
        replay = asyncio.create_task(
            replay_log(nmea_dir / "ublox-neo-m9n-nmea.log", port, speed=25.0, loop=True, stop=stop)
        )
        try:
            deadline = time.monotonic() + 30
            while len(agent.recorder.track()) < 5:
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{agent.page_port()}"
            async with httpx.AsyncClient() as client:
                status = (await client.get(base + "/status.json")).json()
                page = (await client.get(base + "/")).text
        finally:
            stop.set()
            replay.cancel()
            await asyncio.gather(replay, return_exceptions=True)
            agent.stop()
            await asyncio.wait_for(task, 30)
    fix = status["gnss"]["fixes"][0]
    assert fix["source"] == "rover" and fix["satellites"] >= 4 and 0 < fix["hdop"] < 2
    assert round(fix["lat"], 2) == 38.11 and round(fix["lng"], 2) == -122.63
    assert len(status["gnss"]["track"]) >= 5
    assert "<svg class=track" in page and "38.1104" in page
