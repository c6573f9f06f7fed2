"""AES-GCM sealing of dataset credentials for their trip through the queue.

Keys form a ring: the current key seals, every key in the ring opens, and each sealed text
names its key by a key id, so a rotated-out key keeps opening the jobs queued under it for
as long as the ring holds it. The associated data is the job's identity, its row key and
its per-job id: a sealed text copied into another job's message, or an old message of a
training that was deleted and started again under the same name, does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v2"
# Messages queued before key ids and job ids (one key, bound to the row key only).
_LEGACY_VERSION = "v1"
_NONCE_BYTES = 12


class SealError(ValueError):
    """The sealed text is damaged, from another job, or sealed under a key not in the ring."""


class UnknownKey(SealError):
    """Sealed under a key id the ring does not hold (yet: a rotation may be under way)."""


def key_id(key: bytes) -> str:
    """A short public name of a key (an HMAC of a constant: it tells nothing of the key)."""
    return hmac.new(key, b"aitrainer-sealing-key-id", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRing:
    """The key that seals now and the retired keys that still open."""

    current: bytes
    retired: tuple[bytes, ...] = ()

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every key that opens, the current one first."""
        return (self.current, *self.retired)

    def opening(self, wanted_id: str) -> bytes | None:
        """The ring's key with this id, or None."""
        for key in self.keys:
            if hmac.compare_digest(key_id(key), wanted_id):
                return key
        return None


def _associated_data(profile_id: str, project_name: str, job_id: str) -> bytes:
    return json.dumps([_VERSION, profile_id, project_name, job_id]).encode()


def seal(
    secrets: dict[str, str], ring: KeyRing, profile_id: str, project_name: str, job_id: str
) -> str:
    """Encrypt `secrets` for one job under the current key; ASCII, safe in a queue message."""
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(ring.current).encrypt(
        nonce, json.dumps(secrets).encode(), _associated_data(profile_id, project_name, job_id)
    )
    payload = base64.urlsafe_b64encode(nonce + ciphertext).decode()
    return f"{_VERSION}.{key_id(ring.current)}.{payload}"


def unseal(
    sealed: str, ring: KeyRing, profile_id: str, project_name: str, job_id: str | None
) -> dict[str, str]:
    """Decrypt what `seal` made for the same job with a key of the ring; SealError otherwise.

    `job_id` is the one the job's row holds (None for rows from before job ids).
    """
    version, _, rest = sealed.partition(".")
    if version == _VERSION:
        sealed_id, _, payload = rest.partition(".")
        key = ring.opening(sealed_id)
        if key is None:
            raise UnknownKey(f"sealed under key {sealed_id}, which the key ring does not hold")
        if job_id is None:
            raise SealError("sealed for a job id, but the job's row has none")
        return _open(key, payload, _associated_data(profile_id, project_name, job_id))
    if version == _LEGACY_VERSION:
        legacy = json.dumps([profile_id, project_name]).encode()
        for key in ring.keys:
            try:
                return _open(key, rest, legacy)
            except SealError:
                continue
        raise SealError("sealed credentials do not open with any key of the ring for this job")
    raise SealError(f"unknown sealing version '{version}'")


def _open(key: bytes, payload: str, associated_data: bytes) -> dict[str, str]:
    try:
        raw = base64.urlsafe_b64decode(payload)
        plaintext = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated_data)
    except (InvalidTag, ValueError) as error:
        raise SealError("sealed credentials do not open with this key for this job") from error
    secrets: dict[str, str] = json.loads(plaintext)
    return secrets
