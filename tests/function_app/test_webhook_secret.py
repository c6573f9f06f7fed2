"""Per-tenant webhook secrets over HTTP: derived per profile, told only to its tokens."""

from __future__ import annotations

import hashlib
import hmac

import httpx

from tests.conftest import LIMITED_TOKEN
from worker.webhooks import sign, verify


def secret(client: httpx.Client, profile: str) -> str:
    response = client.get(f"/profiles/{profile}/webhook-secret")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["profile_id"] == profile and body["signature_header"] == "X-AITrainer-Signature"
    return str(body["webhook_secret"])


def test_each_profile_has_its_own_stable_secret_derived_from_the_master(
    client: httpx.Client,
) -> None:
    alice, bob = secret(client, "alice"), secret(client, "bob")
    assert alice != bob and secret(client, "alice") == alice
    expected = hmac.new(b"dev-webhook-secret", b"aitrainer-webhook:alice", hashlib.sha256)
    assert alice == expected.hexdigest()
    # A receiver of bob's events cannot make one that verifies as alice's.
    body = b'{"event": "state_changed", "profile_id": "alice"}'
    forged = sign(bob.encode(), 1_800_000_000, body)
    assert not verify(alice.encode(), forged, body, tolerance_seconds=10**10)
    assert verify(bob.encode(), forged, body, tolerance_seconds=10**10)


def test_a_token_learns_only_the_secrets_of_its_own_profiles(api_url: str) -> None:
    with httpx.Client(base_url=api_url, headers={"Authorization": LIMITED_TOKEN}) as limited:
        assert limited.get("/profiles/alice/webhook-secret").status_code == 200
        assert limited.get("/profiles/carol/webhook-secret").status_code == 404
    with httpx.Client(base_url=api_url) as anonymous:
        assert anonymous.get("/profiles/alice/webhook-secret").status_code == 401


def test_an_invalid_profile_id_is_a_400(client: httpx.Client) -> None:
    response = client.get("/profiles/.hidden/webhook-secret")
    assert response.status_code == 400 and "profile_id" in response.json()["message"]
