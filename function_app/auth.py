"""API tokens: `AITRAINER_API_TOKENS` parsed into grants, and the grant a request presents."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shared.contract import identifier_problem


@dataclass(frozen=True)
class Grant:
    """One accepted token, optionally limited to some profile ids."""

    token: bytes
    profiles: frozenset[str] | None  # None: every profile

    def allows(self, profile_id: str) -> bool:
        return self.profiles is None or profile_id in self.profiles

    @property
    def fingerprint(self) -> str:
        """Names the token in rows and tables without revealing it (not reversible)."""
        return hashlib.sha256(b"aitrainer-token:" + self.token).hexdigest()[:32]


def parse_tokens(value: str) -> list[Grant]:
    """Parse `AITRAINER_API_TOKENS`: comma-separated `token` or `token=profile|profile`.

    An item splits at its last `=` only when a valid profile list follows, so a base64
    token ending in `=` (or `==`) stays whole.
    """
    grants = []
    for item in value.split(","):
        item = item.strip()
        token, _, listed = item.rpartition("=")
        token = token.strip()  # a presented token never carries spaces at its ends
        profiles = [part.strip() for part in listed.split("|")]
        if token and all(part and identifier_problem(part) is None for part in profiles):
            grants.append(Grant(token.encode(), frozenset(profiles)))
        elif item:
            grants.append(Grant(item.encode(), None))
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
