"""Fair use over real HTTP on Azurite: the per-token cap on active trainings (429) and
`Idempotency-Key` replays of /starttraining/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from dev.stack import ApiServer, Azurite
from function_app.api import ApiSettings, create_app
from function_app.auth import parse_tokens
from shared.contract import State
from shared.storage.account import StorageAccount
from shared.storage.idempotency import IdempotencyKeys, body_digest, row_key
from shared.storage.jobs import JobsTable
from tests.conftest import LIMITED_TOKEN, TOKEN, fresh_settings
from tests.function_app.helpers import start_body

CAP = 2


@pytest.fixture
def capped(azurite: Azurite) -> Iterator[tuple[ApiSettings, str]]:
    settings = fresh_settings(azurite, max_active_per_token=CAP)
    server = ApiServer(create_app(settings)).start()
    yield settings, server.url
    server.stop()


def as_token(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": token}, timeout=30)


def queued(settings: ApiSettings) -> int:
    return (
        StorageAccount(settings)
        .queue(settings.jobs_queue)
        .get_queue_properties()["approximate_message_count"]
    )


def finish(settings: ApiSettings, project: str) -> None:
    def end(row: object) -> None:
        row.state = State.SUCCESS  # type: ignore[attr-defined]

    JobsTable(StorageAccount(settings).table(settings.trainings_table)).modify(
        "alice", project, end
    )


def test_a_token_past_its_cap_gets_429_naming_the_number_active(
    capped: tuple[ApiSettings, str],
) -> None:
    settings, url = capped
    client = as_token(url, TOKEN)
    bodies = [start_body() for _ in range(CAP + 1)]
    assert [client.post("/starttraining/", json=b).status_code for b in bodies[:CAP]] == [202] * CAP
    refused = client.post("/starttraining/", json=bodies[CAP])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json()["status"] == "FAILED"
    assert refused.json()["message"] == (
        f"this token has {CAP} trainings queued or running and may have at most {CAP}; "
        "start more when one ends"
    )
    # Nothing of the refused start stays behind: no row, no message.
    assert client.get(f"/statustraining/alice/{bodies[CAP]['project_name']}").status_code == 404
    assert queued(settings) == CAP
    # Another token has a cap of its own; a finished training frees a place.
    assert (
        as_token(url, LIMITED_TOKEN).post("/starttraining/", json=start_body()).status_code == 202
    )
    finish(settings, bodies[0]["project_name"])
    assert client.post("/starttraining/", json=bodies[CAP]).status_code == 202


def test_a_profile_limited_tokens_cap_counts_all_its_profiles(
    capped: tuple[ApiSettings, str],
) -> None:
    _, url = capped
    limited = as_token(url, LIMITED_TOKEN)  # alice|bob: counted in both partitions
    for profile in ("alice", "bob"):
        assert (
            limited.post("/starttraining/", json=start_body(profile_id=profile)).status_code == 202
        )
    refused = limited.post("/starttraining/", json=start_body(profile_id="alice"))
    assert refused.status_code == 429 and f"has {CAP} trainings" in refused.json()["message"]


def test_racing_starts_never_exceed_the_cap(capped: tuple[ApiSettings, str]) -> None:
    settings, url = capped
    client = as_token(url, TOKEN)

    def start(body: dict[str, object]) -> httpx.Response:
        return client.post("/starttraining/", json=body)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(start, [start_body() for _ in range(6)]))
    codes = [answer.status_code for answer in answers]
    started = codes.count(202)
    assert set(codes) <= {202, 429} and started <= CAP, codes
    # Refused while places were left (all racers saw each other): retry in a second.
    assert {a.headers["Retry-After"] for a in answers if a.status_code == 429} <= {"1", "60"}
    jobs = JobsTable(StorageAccount(settings).table(settings.trainings_table))
    assert len(jobs.active_since(parse_tokens(TOKEN)[0].fingerprint)) == started
    assert queued(settings) == started
    for _ in range(CAP - started):  # what a race left free, sequential starts take
        assert start(start_body()).status_code == 202
    assert start(start_body()).headers["Retry-After"] == "60"


def test_a_retried_start_with_its_key_gets_the_first_answer_and_trains_once(
    client: httpx.Client, settings: ApiSettings
) -> None:
    body = start_body()
    key = {"Idempotency-Key": "order-7f3a/retry#1"}  # any visible ASCII, even / and #
    first = client.post("/starttraining/", json=body, headers=key)
    # The same JSON in another order and spacing is the same body.
    again = client.post(
        "/starttraining/",
        content=json.dumps(dict(reversed(list(body.items()))), indent=2),
        headers=key | {"Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert queued(settings) == 1
    # Without the key the same body is a second start of an existing name, as before.
    assert client.post("/starttraining/", json=body).status_code == 409
    other = client.post("/starttraining/", json=start_body(), headers=key)
    assert other.status_code == 422
    assert (
        "Idempotency-Key 'order-7f3a/retry#1' was used with another body" in other.json()["message"]
    )
    assert queued(settings) == 1


def test_keys_belong_to_their_token_and_refused_starts_are_not_remembered(
    client: httpx.Client, settings: ApiSettings, api_url: str
) -> None:
    key = {"Idempotency-Key": "k-1"}
    limited = as_token(api_url, LIMITED_TOKEN)
    assert client.post("/starttraining/", json=start_body(), headers=key).status_code == 202
    assert limited.post("/starttraining/", json=start_body(), headers=key).status_code == 202
    # A refusal (403 here) is not stored: after fixing the body, the key starts it.
    carol = start_body(profile_id="carol")
    assert (
        limited.post("/starttraining/", json=carol, headers={"Idempotency-Key": "k-2"}).status_code
        == 403
    )
    exists = start_body(
        project_name=client.get("/trainings/alice").json()["trainings"][0]["project_name"]
    )
    assert (
        client.post("/starttraining/", json=exists, headers={"Idempotency-Key": "k-3"}).status_code
        == 409
    )
    assert (
        client.post(
            "/starttraining/", json=start_body(), headers={"Idempotency-Key": "k-3"}
        ).status_code
        == 202
    )
    bad = client.post("/starttraining/", json=start_body(), headers={"Idempotency-Key": "x" * 256})
    assert bad.status_code == 400
    assert bad.json()["message"] == "Idempotency-Key must be 1 to 255 visible ASCII characters"


def test_a_key_under_way_answers_409_and_an_expired_or_abandoned_one_starts_afresh(
    client: httpx.Client, settings: ApiSettings
) -> None:
    keys = IdempotencyKeys(StorageAccount(settings).table(settings.idempotency_table))
    owner = parse_tokens(TOKEN)[0].fingerprint
    body = start_body()
    raw = json.dumps(body).encode()
    keys.reserve(owner, "busy", body_digest(raw))  # a first request still at work
    waiting = client.post("/starttraining/", json=body, headers={"Idempotency-Key": "busy"})
    assert waiting.status_code == 409 and waiting.headers["Retry-After"] == "2"
    assert "under way" in waiting.json()["message"]

    def age(name: str, by: timedelta) -> None:
        table = StorageAccount(settings).table(settings.idempotency_table)
        entity = table.get_entity(owner, row_key(name))
        entity["created"] = datetime.now(UTC) - by
        table.update_entity(entity)

    age("busy", timedelta(minutes=2))  # its request died: a retry takes the key over
    assert (
        client.post("/starttraining/", json=body, headers={"Idempotency-Key": "busy"}).status_code
        == 202
    )
    keys.reserve(owner, "stale", body_digest(raw))
    age("stale", timedelta(hours=25))
    age("busy", timedelta(hours=25))  # a day later the key is free for another body
    response = client.post(
        "/starttraining/", json=start_body(), headers={"Idempotency-Key": "busy"}
    )
    assert response.status_code == 202
    assert keys.get(owner, "stale") is None  # each reservation prunes expired keys
