"""edgeagent: the field-site gateway daemon."""

__version__ = "0.2.0"
# The release's date: a wall clock more than a year before it is plainly unsynchronised.
BUILD_DATE = "2026-12-04"
