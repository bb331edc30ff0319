"""GNSS benchmark: sentences/s through framing, parsing and epoch merging, and garbage.

Ours runs raw bytes through the driver's NMEA pipeline (framer, epoch assembler,
reporting policy set to every epoch); the baseline is a bare loop over the same lines
that calls pynmea2.parse and reads the same fields, measured in the same run. Then a
megabyte of random bytes goes through the pipeline: CPU time and memory growth.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pynmea2

from edgeagent.clock import SystemClock
from edgeagent.drivers.gnss_stream import NmeaPipeline
from edgeagent.replay import simulated_epochs
from edgeagent.settings import GnssDevice

READ_SIZE = 4096
FIELDS = {
    "RMC": (
        "timestamp",
        "status",
        "lat",
        "lat_dir",
        "lon",
        "lon_dir",
        "spd_over_grnd",
        "true_course",
        "datestamp",
    ),
    "GGA": (
        "timestamp",
        "lat",
        "lat_dir",
        "lon",
        "lon_dir",
        "gps_qual",
        "num_sats",
        "horizontal_dil",
        "altitude",
    ),
    "VTG": ("true_track", "spd_over_grnd_kmph"),
    "GSA": ("sv_id01", "pdop", "hdop"),
}


def test_lines(epochs: int) -> list[bytes]:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    return [line for epoch in islice(simulated_epochs(start), epochs) for line in epoch]


def baseline(lines: list[bytes]) -> tuple[float, int]:
    """pynmea2 alone, on lines already cut and decoded for it."""
    texts = [line.decode("ascii").strip() for line in lines]
    started = time.perf_counter()
    read = 0
    for text in texts:
        message = pynmea2.parse(text)
        for name in FIELDS[message.sentence_type]:
            if getattr(message, name) is not None:
                read += 1
    elapsed = time.perf_counter() - started
    assert read
    return len(texts) / elapsed, read


def ours(lines: list[bytes]) -> tuple[float, int]:
    device = GnssDevice(
        id="bench",
        port="/dev/null",
        date_floor=None,
        report_min_interval_s=0,
        report_distance_m=None,
        report_turn_deg=None,
    )
    pipeline = NmeaPipeline(device, SystemClock().now)
    data = b"".join(lines)
    started = time.perf_counter()
    fixes = 0
    for offset in range(0, len(data), READ_SIZE):
        fixes += len(pipeline.feed(data[offset : offset + READ_SIZE]))
    fixes += len(pipeline.flush())
    elapsed = time.perf_counter() - started
    assert pipeline.sentences == len(lines), (pipeline.sentences, len(lines))
    return len(lines) / elapsed, fixes


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def garbage(megabytes: float) -> dict[str, float]:
    rng = random.Random(20261204)
    size = int(megabytes * 1024 * 1024)
    # Mostly uniform noise, with start characters, line ends and checksum-looking tails
    # mixed in so that the framer's every state is exercised, not only its hunt.
    alphabet = bytes(range(256)) + b"$$!!**\r\n\r\n,,,GPGGA0123456789"
    blob = bytes(rng.choice(alphabet) for _ in range(size))
    device = GnssDevice(id="bench", port="/dev/null", date_floor=None)
    pipeline = NmeaPipeline(device, SystemClock().now)
    gc.collect()
    before = rss_kib()
    cpu = time.process_time()
    for offset in range(0, size, READ_SIZE):
        pipeline.feed(blob[offset : offset + READ_SIZE])
    pipeline.flush()
    cpu = time.process_time() - cpu
    gc.collect()
    growth = rss_kib() - before
    # RSS moves in pages and arenas; a second pass under tracemalloc shows the peak of
    # what the pipeline itself allocates while it chews through the garbage.
    pipeline = NmeaPipeline(device, SystemClock().now)
    tracemalloc.start()
    for offset in range(0, size, READ_SIZE):
        pipeline.feed(blob[offset : offset + READ_SIZE])
    pipeline.flush()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "garbage_mb": megabytes,
        "garbage_cpu_s": cpu,
        "garbage_rss_growth_kib": float(growth),
        "garbage_traced_peak_kib": peak / 1024,
        "garbage_pieces_dropped": float(sum(pipeline.framer.drops.values())),
    }


def run(args: argparse.Namespace) -> dict[str, float]:
    lines = test_lines(args.epochs)
    # Warm up both paths once so neither pays for first-call imports and caches.
    baseline(lines[:400])
    ours(lines[:400])
    base_rates, our_rates = [], []
    for _ in range(args.rounds):
        base_rates.append(baseline(lines)[0])
        our_rates.append(ours(lines)[0])
    base, mine = max(base_rates), max(our_rates)
    figures = {
        "sentences": float(len(lines)),
        "baseline_pynmea2_sentences_per_s": base,
        "pipeline_sentences_per_s": mine,
        "pipeline_vs_pynmea2_ratio": mine / base,
    }
    figures.update(garbage(args.garbage_mb))
    for key, value in figures.items():
        print(f"{key}: {value:,.3f}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5000, help="simulated epochs (4 lines)")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    parser.add_argument("--garbage-mb", type=float, default=1.0, help="random bytes fed")
    parser.add_argument("--quick", action="store_true", help="a small run")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds = 1000, 1
    figures = run(args)
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
