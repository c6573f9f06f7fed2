"""Each tenant's webhook signing secret, derived from one master secret.

With one secret for all, any receiver could forge events for another tenant. A profile's
secret is HMAC-SHA256(master, "aitrainer-webhook:" + profile_id), hex: the worker signs that
profile's events with it, and GET /profiles/{profile_id}/webhook-secret tells it to a token
allowed for the profile. Nothing is stored; rotating the master rotates every tenant's.
"""

from __future__ import annotations

import hashlib
import hmac

DERIVATION_LABEL = b"aitrainer-webhook:"


def tenant_webhook_secret(master: str, profile_id: str) -> str:
    """The secret `profile_id`'s webhooks are signed with (64 hex characters)."""
    message = DERIVATION_LABEL + profile_id.encode()
    return hmac.new(master.encode(), message, hashlib.sha256).hexdigest()
