"""Drivers: one per device kind, each owning its connection and reporting its health."""
