import os

import pytest

from shared.sealing import SealError, seal, unseal

KEY = os.urandom(32)


def test_sealed_secrets_open_for_the_same_job() -> None:
    sealed = seal({"azure_connection_string": "AccountKey=abc"}, KEY, "alice", "teeth")
    assert "AccountKey" not in sealed
    assert unseal(sealed, KEY, "alice", "teeth") == {"azure_connection_string": "AccountKey=abc"}


def test_each_seal_differs_for_the_same_input() -> None:
    assert seal({"a": "b"}, KEY, "p", "q") != seal({"a": "b"}, KEY, "p", "q")


@pytest.mark.parametrize(
    ("key", "profile", "project"),
    [(os.urandom(32), "alice", "teeth"), (KEY, "alice", "other"), (KEY, "bob", "teeth")],
    ids=["other key", "other project", "other profile"],
)
def test_sealed_secrets_do_not_open_elsewhere(key: bytes, profile: str, project: str) -> None:
    sealed = seal({"a": "b"}, KEY, "alice", "teeth")
    with pytest.raises(SealError):
        unseal(sealed, key, profile, project)


def test_tampered_text_is_refused() -> None:
    sealed = seal({"a": "b"}, KEY, "alice", "teeth")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealError):
        unseal(tampered, KEY, "alice", "teeth")
    with pytest.raises(SealError, match="unknown sealing version"):
        unseal("v9." + sealed[3:], KEY, "alice", "teeth")
