"""The local status page, its JSON twin, and the token-protected operator API."""
