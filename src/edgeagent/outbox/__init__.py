"""The store-and-forward buffer: an event counts as received once committed here."""

from edgeagent.outbox.store import Outbox, OutboxStats, StoredEvent

__all__ = ["Outbox", "OutboxStats", "StoredEvent"]
