"""Delivers the outbox to the platform webhook in signed batches."""

from edgeagent.uplink.client import Uplink, UplinkCredentials

__all__ = ["Uplink", "UplinkCredentials"]
