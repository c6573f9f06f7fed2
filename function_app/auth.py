"""API tokens: `AITRAINER_API_TOKENS` parsed into grants, and the grant a request presents."""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    """One accepted token, optionally limited to some profile ids."""

    token: bytes
    profiles: frozenset[str] | None  # None: every profile

    def allows(self, profile_id: str) -> bool:
        return self.profiles is None or profile_id in self.profiles


def parse_tokens(value: str) -> list[Grant]:
    """Parse `AITRAINER_API_TOKENS`: comma-separated `token` or `token=profile|profile`."""
    grants = []
    for item in value.split(","):
        token, _, profiles = item.strip().partition("=")
        if not token:
            continue
        limited = frozenset(p.strip() for p in profiles.split("|") if p.strip()) or None
        grants.append(Grant(token.encode(), limited))
    return grants


def presented_token(header: str) -> bytes:
    """The token of an Authorization header: raw, `Bearer <token>` or `Token <token>`."""
    scheme, _, rest = header.strip().partition(" ")
    if rest and scheme.lower() in ("bearer", "token"):
        return rest.strip().encode()
    return header.strip().encode()


def matching_grant(grants: list[Grant], header: str) -> Grant | None:
    """The grant whose token the header carries, compared in constant time; None if none."""
    presented = presented_token(header) if header else b""
    match = None
    for grant in grants:
        # Compare against every grant so timing does not tell which one matched.
        if hmac.compare_digest(grant.token, presented) and match is None:
            match = grant
    return match
