"""Is this delivery really from Paradime?

Paradime does not document a signing scheme, so two are supported:

* ``signature``: Standard Webhooks / Svix — HMAC-SHA256 over ``{id}.{timestamp}.{body}``
  keyed with the base64 part of a ``whsec_…`` secret, timestamps within 5 minutes.
  The ``standardwebhooks`` library does the cryptography and the constant-time compare;
  ``svix-*`` headers are accepted as twins of the ``webhook-*`` ones.
* ``token``: a shared token in ``Authorization: Bearer …``, ``X-Webhook-Token`` or the URL
  path (``/webhooks/paradime/<token>``), for senders that cannot sign.

The reason for a refusal is returned for the log and the 401 body; it never contains
the secret or the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook

from triage.config import WebhookSettings

_TWINS = ("id", "timestamp", "signature")


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
        wanted[f"webhook-{part}"] = value
    try:
        Webhook(secret).verify(body, wanted, json_parse=False)
    except Exception as exc:  # WebhookVerificationError, or a malformed header the library chokes on
        reason = str(exc) if exc.__class__.__name__ == "WebhookVerificationError" else "malformed signature"
        return f"signature rejected: {reason}"
    return None


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
