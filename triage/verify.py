"""Is this delivery really from Paradime?

Paradime does not document a signing scheme, so two are supported:

* ``signature``: Standard Webhooks / Svix — ``base64(HMAC-SHA256(key, b"{id}.{timestamp}." + body))``
  keyed with the base64-decoded part of a ``whsec_…`` secret after the prefix, timestamps (integer
  Unix seconds) within 5 minutes of now; ``webhook-signature`` holds space-separated
  ``v1,<base64>`` entries, any of which may match (other versions and malformed entries are
  skipped), compared in constant time. The HMAC is computed here over the raw body bytes, so a
  correctly signed body that is not UTF-8 is authentic (and then refused as a bad body, 400),
  where the ``standardwebhooks`` library would decode it first and refuse it as unauthentic.
  ``svix-*`` headers are accepted as twins of the ``webhook-*`` ones.
* ``token``: a shared token in ``Authorization: Bearer …``, ``X-Webhook-Token`` or the URL
  path (``/webhooks/paradime/<token>``), for senders that cannot sign.

The reason for a refusal is returned for the log and the 401 body; it never contains
the secret or the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from triage.config import WebhookSettings

_TWINS = ("id", "timestamp", "signature")
_SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The sender's id for this delivery: the same on every redelivery, so it deduplicates."""
    return headers.get("webhook-id") or headers.get("svix-id") or None


def verify(settings: WebhookSettings, body: bytes, headers: Mapping[str, str], path_token: str | None) -> str | None:
    """Return None when the request is authentic, else the reason it is not."""
    if settings.verification == "none":
        return None
    if settings.verification == "token":
        return _verify_token(settings.token or "", headers, path_token)
    return _verify_signature(settings.secret or "", body, headers)


def _verify_signature(secret: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    wanted = {}
    for part in _TWINS:
        value = headers.get(f"webhook-{part}") or headers.get(f"svix-{part}")
        if not value:
            return f"missing webhook-{part} (or svix-{part}) header"
        wanted[part] = value
    key = _secret_key(secret)
    if not key:
        return "signature rejected: no usable signing secret"
    timestamp = wanted["timestamp"].strip()
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "signature rejected: webhook-timestamp is not a Unix time in seconds"
    age = time.time() - int(timestamp)
    if age > TOLERANCE_SECONDS:
        return "signature rejected: message timestamp too old"
    if age < -TOLERANCE_SECONDS:
        return "signature rejected: message timestamp too new"
    signed = f"{wanted['id']}.{timestamp}.".encode() + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in wanted["signature"].split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            offered = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, offered):
            return None
    return "signature rejected: no matching signature found"


def _secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (decoded as the ``standardwebhooks`` library does,
    so that a secret the configuration check accepted verifies the same way)."""
    encoded = secret[len(_SECRET_PREFIX):] if secret.startswith(_SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError):
        return b""


def _verify_token(token: str, headers: Mapping[str, str], path_token: str | None) -> str | None:
    auth = headers.get("authorization", "")
    offered = [
        auth[7:].strip() if auth.lower().startswith("bearer ") else "",
        headers.get("x-webhook-token", ""),
        path_token or "",
    ]
    if any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered):
        return None
    return "shared token missing or wrong"
