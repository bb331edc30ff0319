"""edgeagent: the field-site gateway daemon."""

__version__ = "0.1.0"
