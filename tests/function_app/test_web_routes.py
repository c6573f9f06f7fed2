"""The page's routes over real HTTP: /ui/ without a token and with its security headers,
/ redirecting there, GET /profiles per token, and the list's progress fields."""

from __future__ import annotations

import httpx

from function_app.api import ApiSettings
from shared.contract import StartTrainingRequest, TrainingRow
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable
from tests.conftest import LIMITED_TOKEN
from tests.function_app.helpers import start_body


def test_the_page_loads_without_a_token_under_a_policy_naming_only_itself_and_storage(
    api_url: str, settings: ApiSettings
) -> None:
    redirect = httpx.get(api_url + "/", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
    page = httpx.get(api_url + "/ui/")
    assert page.status_code == 200 and '<main id="app">' in page.text
    policy = page.headers["content-security-policy"]
    storage = StorageAccount(settings).artifacts().client.url.split("/", 3)
    assert f"connect-src 'self' {storage[0]}//{storage[2]}" in policy
    assert "script-src 'self' 'wasm-unsafe-eval'" in policy and "unsafe-inline" not in policy
    assert page.headers["cache-control"] == "no-cache"
    script = page.text.split('src="', 1)[1].split('"', 1)[0]
    asset = httpx.get(api_url + script)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert "cache-control" not in asset.headers  # hashed names: cacheable
    assert httpx.get(api_url + "/ui/no-such-file.js").status_code == 404
    # Everything else still needs the token.
    assert httpx.get(api_url + "/profiles").status_code == 401


def test_profiles_lists_a_limited_tokens_own_and_every_profile_with_trainings_otherwise(
    client: httpx.Client, api_url: str, settings: ApiSettings
) -> None:
    """client carries the unlimited token."""
    assert client.get("/profiles").json() == {"profiles": []}
    jobs = JobsTable(StorageAccount(settings).table(settings.trainings_table))
    for profile in ("zed", "alice", "zed"):
        request = StartTrainingRequest.model_validate(start_body(profile_id=profile))
        jobs.insert(TrainingRow.from_request(request, None, "job"))
    assert client.get("/profiles/").json() == {"profiles": ["alice", "zed"]}
    limited = httpx.get(api_url + "/profiles", headers={"Authorization": LIMITED_TOKEN})
    assert limited.json() == {"profiles": ["alice", "bob"]}
    listed = client.get("/trainings/zed").json()["trainings"]
    assert [(t["current_epoch"], t["epochs"], t["accuracy"]) for t in listed] == [(0, 10, None)] * 2
