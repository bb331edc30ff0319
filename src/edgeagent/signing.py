"""The webhook signature: `X-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>`."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_TOLERANCE_S = 300


class SignatureError(Exception):
    """The request's signature is missing, malformed, stale or wrong."""


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: bytes,
    body: bytes,
    header: str | None,
    now: float,
    tolerance: float = SIGNATURE_TOLERANCE_S,
) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` within `tolerance`."""
    if not header:
        raise SignatureError("no X-Signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("malformed X-Signature header")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError) as exc:
        raise SignatureError("X-Signature has no valid t= field") from exc
    if abs(now - timestamp) > tolerance:
        raise SignatureError("signature timestamp outside the allowed window")
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise SignatureError("signature does not match the body")
