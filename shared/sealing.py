"""AES-GCM sealing of dataset credentials for their trip through the queue.

The job's row key is the associated data, so a sealed blob copied into another job's
message does not open there.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
_NONCE_BYTES = 12


class SealError(ValueError):
    """The sealed text is damaged, from another job, or sealed under another key."""


def _associated_data(profile_id: str, project_name: str) -> bytes:
    return json.dumps([profile_id, project_name]).encode()


def seal(secrets: dict[str, str], key: bytes, profile_id: str, project_name: str) -> str:
    """Encrypt `secrets` for one job; the result is ASCII and safe in a queue message."""
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(
        nonce, json.dumps(secrets).encode(), _associated_data(profile_id, project_name)
    )
    return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + ciphertext).decode()}"


def unseal(sealed: str, key: bytes, profile_id: str, project_name: str) -> dict[str, str]:
    """Decrypt what `seal` made for the same job; SealError otherwise."""
    version, _, payload = sealed.partition(".")
    if version != _VERSION:
        raise SealError(f"unknown sealing version '{version}'")
    try:
        raw = base64.urlsafe_b64decode(payload)
        plaintext = AESGCM(key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(profile_id, project_name)
        )
    except (InvalidTag, ValueError) as error:
        raise SealError("sealed credentials do not open with this key for this job") from error
    secrets: dict[str, str] = json.loads(plaintext)
    return secrets
