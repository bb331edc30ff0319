"""Logging for a terminal or for journald: syslog priorities, per-module levels, no secrets.

Under systemd the journal stamps each line with its time and reads a `<N>` prefix as
the line's syslog priority (sd-daemon(3)), so there the lines carry neither a time nor
a level word, and `journalctl -p warning` filters them properly.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

# sd-daemon(3) priorities for the logging levels.
SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
REDACTED = "[redacted]"
# Shorter values (a test password of "x") would redact ordinary words.
MIN_SECRET_LENGTH = 4


def under_journal(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether `stream` is the journal's: systemd names its device and inode in
    JOURNAL_STREAM, which a child with redirected output must not take for its own."""
    env = os.environ if environ is None else environ
    expected = env.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def priority(level: int) -> int:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= threshold:
            return SYSLOG_PRIORITY[threshold]
    return SYSLOG_PRIORITY[logging.DEBUG]


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message`, each continuation line prefixed too, so a traceback
    keeps the priority of the error it belongs to."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class SecretFilter(logging.Filter):
    """Replaces every known secret value in a log line, a last guard for a secret that
    slipped into an exception's text or a URL."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str | bytes | None) -> None:
        if secret is None:
            return
        text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
        if len(text) >= MIN_SECRET_LENGTH:
            self.secrets.add(text)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        scrubbed = message
        for secret in self.secrets:
            scrubbed = scrubbed.replace(secret, REDACTED)
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback's text is made later by the formatter; scrub it here instead.
            text = logging.Formatter().formatException(record.exc_info)
            for secret in self.secrets:
                text = text.replace(secret, REDACTED)
            scrubbed = f"{scrubbed}\n{text}"
            record.exc_info = None
            record.exc_text = None
        if scrubbed != message or record.args:
            record.msg, record.args = scrubbed, None
        return True


secret_filter = SecretFilter()


def redact_secret(secret: str | bytes | None) -> None:
    """Name a secret value that must never reach a log line."""
    secret_filter.add(secret)


def configure(
    level: str,
    module_levels: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Set up the root logger once for the process; returns the handler it installed."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if under_journal(out, environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    # Replace our own earlier handler only; one a host program installed stays.
    for old in list(root.handlers):
        if getattr(old, "edgeagent", False):
            root.removeHandler(old)
    handler.edgeagent = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at info: too loud for an operator's journal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    apply_module_levels(module_levels or {})
    return handler


def apply_module_levels(module_levels: Mapping[str, str]) -> None:
    """Per-logger levels from the configuration, e.g. {"edgeagent.drivers.mqtt": "debug"}."""
    for name, module_level in module_levels.items():
        logging.getLogger(name).setLevel(module_level.upper())
