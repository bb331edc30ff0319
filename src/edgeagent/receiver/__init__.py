"""The receiver: a local stand-in for the platform's inbound webhook pipeline."""
