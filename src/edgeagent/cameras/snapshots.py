"""JPEG snapshots on disk, bounded by count and bytes, newest kept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[0-9]{8}T[0-9]{9}Z-[a-z_]+(-[0-9]+)?\.jpg$")


class SnapshotStore:
    """One camera's snapshot folder. Names sort by time, so the oldest go first."""

    def __init__(self, folder: Path, keep: int, max_bytes: int) -> None:
        self.folder = folder
        self.keep = keep
        self.max_bytes = max_bytes
        self.newest: str | None = None

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        names = self._names()
        self.newest = names[-1] if names else None

    async def save(self, jpeg: bytes, at: datetime, reason: str) -> str:
        """Write one snapshot and prune the oldest; returns its file name."""
        return await asyncio.to_thread(self._save, jpeg, at, reason)

    def _save(self, jpeg: bytes, at: datetime, reason: str) -> str:
        stamp = at.strftime("%Y%m%dT%H%M%S") + f"{at.microsecond // 1000:03d}Z"
        name = f"{stamp}-{reason}.jpg"
        counter = 1
        while (self.folder / name).exists():
            name = f"{stamp}-{reason}-{counter}.jpg"
            counter += 1
        partial = self.folder / f".{name}.part"
        # Written aside and renamed, so the page never serves half a picture.
        partial.write_bytes(jpeg)
        os.replace(partial, self.folder / name)
        self.newest = name
        self._prune()
        return name

    def path(self, name: str) -> Path | None:
        """The file of a snapshot by name; None for anything not a snapshot of ours."""
        if not _NAME.match(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def _names(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.folder) if _NAME.match(e.name))
        except FileNotFoundError:
            return []

    def _prune(self) -> None:
        names = self._names()
        sizes = []
        for name in names:
            try:
                sizes.append((self.folder / name).stat().st_size)
            except FileNotFoundError:
                sizes.append(0)
        total = sum(sizes)
        index = 0
        # The newest always stays, however large, so the page has a picture.
        while index < len(names) - 1 and (
            len(names) - index > self.keep or total > self.max_bytes
        ):
            with contextlib.suppress(FileNotFoundError):
                (self.folder / names[index]).unlink()
            total -= sizes[index]
            index += 1
        if index:
            log.debug("snapshots: pruned %d from %s", index, self.folder)
