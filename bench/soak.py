"""Kill soak: SIGKILL the daemon over and over during ingest and drain; count what survives.

The scenario of tests/test_faults.py's kill test, many more times: a real mosquitto with
persistence, a real receiver, the daemon as `python -m edgeagent run -c FILE`, killed at
seeded random moments and restarted. Prints progress, then, as the last line, one JSON
object: kills, messages, duplicates (re-sent events the receiver already held),
redelivered (readings the broker delivered again after a kill), lost (must be 0) and
elapsed_s. Exits 1 when anything was lost.

    python bench/soak.py --kills 1000 [--seed N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    # The kill cycle lives with the tests' helpers, so both run the same scenario.
    sys.path.insert(0, str(REPO))

from tests.conftest import Mosquitto  # noqa: E402
from tests.faults import KillFigures, KillRig, mqtt_online, run_kill_cycles  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000, help="SIGKILLs (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments")
    parser.add_argument("--batch", type=int, default=10, help="uplink batch_max_events")
    parser.add_argument("--burst", type=int, default=120, help="readings per kill cycle")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="edgeagent-soak-"))
    say(f"soak: {args.kills} kills, seed {args.seed}, work folder {folder}")
    broker = Mosquitto(folder / "broker")
    broker.start()
    prefix = f"soak{uuid.uuid4().hex[:8]}"
    rig = KillRig.build(folder, broker, prefix, batch=args.batch)
    every = max(1, args.kills // 20)

    def progress(done: int, figures: KillFigures) -> None:
        if done % every == 0 or done == args.kills:
            say(
                f"  {done}/{args.kills} kills ({dict(figures.modes)}, "
                f"{figures.killed_with_backlog} with events queued)"
            )

    try:
        rig.receiver.start()
        rig.daemon.start()
        rig.daemon.wait_until(mqtt_online, timeout=30, what="first subscription")
        rig.daemon.kill()
        figures = run_kill_cycles(
            rig,
            args.kills,
            args.seed,
            burst=args.burst,
            progress=progress,
            settle_timeout=600,
        )
    finally:
        rig.receiver.stop()
        broker.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    bound = figures.kills * args.batch
    say(
        f"soak: {figures.messages} readings, {figures.lost} lost, {figures.duplicates} "
        f"duplicate deliveries (bound {bound}), {figures.redelivered} redelivered by the broker"
    )
    result = figures.as_dict() | {"batch_max_events": args.batch, "seed": args.seed}
    print(json.dumps(result), flush=True)
    return 0 if figures.lost == 0 and figures.duplicates <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
