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

    An item splits at its last `=`; nothing after it is a base64 token's padding (`abc==`
    stays whole). Anything else after it must be a valid profile list: a typo such as
    `tok=alice|` is refused (ValueError, naming the item's place, never the token) rather
    than turned into a token nobody presents.
    """
    grants = []
    for place, item in enumerate(value.split(","), start=1):
        item = item.strip()
        token, equals, listed = item.rpartition("=")
        token = token.strip()  # a presented token never carries spaces at its ends
        if not item:
            continue
        if not equals or not listed.strip() or not token:
            grants.append(Grant(item.encode(), None))
            continue
        profiles = [part.strip() for part in listed.split("|")]
        if not all(part and identifier_problem(part) is None for part in profiles):
            raise ValueError(
                f"AITRAINER_API_TOKENS item {place}: what follows its last '=' must be "
                "profile ids separated by '|' (each a valid profile_id)"
            )
        grants.append(Grant(token.encode(), frozenset(profiles)))
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
