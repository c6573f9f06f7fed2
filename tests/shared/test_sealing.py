import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.sealing import KeyRing, SealError, key_id, seal, unseal

KEY = os.urandom(32)
RING = KeyRing(KEY)
JOB = "a" * 32


def test_sealed_secrets_open_for_the_same_job() -> None:
    sealed = seal({"azure_connection_string": "AccountKey=abc"}, RING, "alice", "teeth", JOB)
    assert "AccountKey" not in sealed
    assert unseal(sealed, RING, "alice", "teeth", JOB) == {
        "azure_connection_string": "AccountKey=abc"
    }


def test_each_seal_differs_for_the_same_input() -> None:
    assert seal({"a": "b"}, RING, "p", "q", JOB) != seal({"a": "b"}, RING, "p", "q", JOB)


@pytest.mark.parametrize(
    ("ring", "profile", "project", "job"),
    [
        (KeyRing(os.urandom(32)), "alice", "teeth", JOB),
        (RING, "alice", "other", JOB),
        (RING, "bob", "teeth", JOB),
        (RING, "alice", "teeth", "b" * 32),  # a re-created training of the same name
        (RING, "alice", "teeth", None),
    ],
    ids=["other key", "other project", "other profile", "other job id", "row without job id"],
)
def test_sealed_secrets_do_not_open_elsewhere(
    ring: KeyRing, profile: str, project: str, job: str | None
) -> None:
    sealed = seal({"a": "b"}, RING, "alice", "teeth", JOB)
    with pytest.raises(SealError):
        unseal(sealed, ring, profile, project, job)


def test_a_rotated_ring_opens_what_its_retired_key_sealed() -> None:
    new = os.urandom(32)
    before = seal({"a": "b"}, RING, "alice", "teeth", JOB)
    rotated = KeyRing(new, retired=(KEY,))
    after = seal({"c": "d"}, rotated, "alice", "teeth", JOB)
    assert before.split(".")[1] == key_id(KEY) and after.split(".")[1] == key_id(new)
    assert unseal(before, rotated, "alice", "teeth", JOB) == {"a": "b"}
    assert unseal(after, rotated, "alice", "teeth", JOB) == {"c": "d"}
    with pytest.raises(SealError, match=f"sealed under key {key_id(KEY)}, which the key ring"):
        unseal(before, KeyRing(new), "alice", "teeth", JOB)


def test_messages_queued_before_key_ids_still_open() -> None:
    """v1: one key, bound to the row key only (what the API sealed before job ids)."""
    nonce = os.urandom(12)
    ciphertext = AESGCM(KEY).encrypt(nonce, b'{"a": "b"}', json.dumps(["alice", "teeth"]).encode())
    legacy = "v1." + base64.urlsafe_b64encode(nonce + ciphertext).decode()
    assert unseal(legacy, KeyRing(os.urandom(32), (KEY,)), "alice", "teeth", None) == {"a": "b"}
    with pytest.raises(SealError):
        unseal(legacy, RING, "alice", "other", None)


def test_key_ids_name_keys_apart_without_revealing_them() -> None:
    assert key_id(KEY) != key_id(os.urandom(32))
    assert len(key_id(KEY)) == 16 and key_id(KEY) not in base64.b64encode(KEY).decode()


def test_tampered_text_is_refused() -> None:
    sealed = seal({"a": "b"}, RING, "alice", "teeth", JOB)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealError):
        unseal(tampered, RING, "alice", "teeth", JOB)
    with pytest.raises(SealError, match="unknown sealing version"):
        unseal("v9." + sealed[3:], RING, "alice", "teeth", JOB)
