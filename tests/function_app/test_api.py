"""The API over real HTTP on loopback, backed by Azurite."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dev.stack import ApiServer, Azurite, free_port
from function_app.api import ApiSettings, create_app
from shared.contract import IDENTIFIER_SCHEMA, JobMessage, State
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable
from shared.storage.queue import JobQueue
from shared.storage.workers import WorkersTable
from tests.conftest import LIMITED_TOKEN, TOKEN, fresh_settings
from tests.function_app.helpers import start_body


def jobs_of(settings: ApiSettings) -> JobsTable:
    return JobsTable(StorageAccount(settings).table(settings.trainings_table))


def queue_of(settings: ApiSettings) -> JobQueue:
    return JobQueue(StorageAccount(settings).queue(settings.jobs_queue))


def finish(settings: ApiSettings, profile_id: str, project_name: str, state: State) -> None:
    def end(row: object) -> None:
        row.state = state  # type: ignore[attr-defined]

    jobs_of(settings).modify(profile_id, project_name, end)


@pytest.mark.parametrize(
    "header",
    [TOKEN, f"Bearer {TOKEN}", f"Token {TOKEN}", f"bearer  {TOKEN}"],
    ids=["raw", "bearer", "token", "lowercase scheme and spaces"],
)
def test_every_accepted_authorization_form_works(api_url: str, header: str) -> None:
    response = httpx.get(f"{api_url}/trainings/alice", headers={"Authorization": header})
    assert response.status_code == 404  # authorised; alice simply has no trainings yet


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "empty", "wrong", "other scheme"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/checkserver/"),
        ("POST", "/starttraining/"),
        ("GET", "/statustraining/alice/x"),
        ("GET", "/trainings/alice"),
        ("DELETE", "/trainings/alice/x"),
        ("POST", "/canceltraining/alice/x"),
    ],
)
def test_missing_or_wrong_token_is_401_on_every_route(
    api_url: str, headers: dict[str, str], method: str, path: str
) -> None:
    response = httpx.request(method, api_url + path, headers=headers, json=start_body())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization" in response.json()["message"]


def batch_size_maximum(spec: dict[str, object]) -> object:
    body = spec["paths"]["/starttraining/"]["post"]["requestBody"]["content"]  # type: ignore[index]
    return body["application/json"]["schema"]["properties"]["batch_size"]["maximum"]


def test_docs_and_openapi_need_no_token(api_url: str) -> None:
    spec = httpx.get(f"{api_url}/openapi.json").json()
    for path in (
        "/checkserver/",
        "/starttraining/",
        "/statustraining/{profile_id}/{project_name}",
        "/trainings/{profile_id}",
        "/trainings/{profile_id}/{project_name}",
        "/canceltraining/{profile_id}/{project_name}",
    ):
        assert path in spec["paths"]
    request_schema = spec["paths"]["/starttraining/"]["post"]["requestBody"]["content"]
    fields = request_schema["application/json"]["schema"]["properties"]
    assert fields["epochs"]["maximum"] == 99
    assert fields["batch_size"]["maximum"] == ApiSettings(env="dev").max_batch_size
    # Each app states its own deployment's limit (a schema shared between apps would not).
    for limit in (8, 64):
        assert (
            batch_size_maximum(create_app(ApiSettings(env="dev", max_batch_size=limit)).openapi())
            == limit
        )
    assert (
        batch_size_maximum(httpx.get(f"{api_url}/openapi.json").json())
        == fields["batch_size"]["maximum"]
    )
    # Every path identifier states its rule (the five operations fuzzers found looser).
    identifiers = [
        parameter["schema"]
        for operations in spec["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    ]
    assert len(identifiers) == 8
    assert all(schema["pattern"] == IDENTIFIER_SCHEMA["pattern"] for schema in identifiers)
    assert httpx.get(f"{api_url}/docs").status_code == 200


def test_start_then_status_reports_the_seed_fields(
    client: httpx.Client, settings: ApiSettings
) -> None:
    body = start_body(epochs=12)
    response = client.post("/starttraining/", json=body)
    assert response.status_code == 202
    assert response.json() == {
        "status": "PENDING",
        "profile_id": "alice",
        "project_name": body["project_name"],
        "dataset": "azure://photos/teeth",
        "message": "training queued: 12 epochs of mobilenet_v3_large",
    }
    status = client.get(f"/statustraining/alice/{body['project_name']}").json()
    assert status["result"] == "PENDING"
    assert status["current_epoch"] == 0
    assert status["epochs"] == 12
    assert status["loss"] is None
    assert status["accuracy"] is None
    assert status["last_epoch_duration_seconds"] is None
    assert status["lastupdate"].endswith("Z") or status["lastupdate"].endswith("+00:00")
    message = JobMessage.model_validate_json(queue_of(settings).receive(30).content)  # type: ignore[union-attr]
    assert (message.profile_id, message.project_name) == ("alice", body["project_name"])


@pytest.mark.parametrize("slash", ["", "/"])
def test_both_trailing_slash_forms_work(client: httpx.Client, slash: str) -> None:
    body = start_body()
    assert client.post(f"/starttraining{slash}", json=body).status_code == 202
    name = body["project_name"]
    assert client.get(f"/statustraining/alice/{name}{slash}").status_code == 200
    assert client.get(f"/trainings/alice{slash}").status_code == 200
    assert client.get(f"/checkserver{slash}").status_code in (200, 503)
    assert client.post(f"/canceltraining/alice/{name}{slash}").status_code == 200
    assert client.delete(f"/trainings/alice/{name}{slash}").status_code == 200


def test_unknown_training_is_404(client: httpx.Client) -> None:
    response = client.get("/statustraining/alice/nothing-here")
    assert response.status_code == 404
    assert response.json()["message"] == "no training 'nothing-here' for profile 'alice'"


def test_malformed_identifier_in_path_is_400(client: httpx.Client) -> None:
    response = client.get("/statustraining/alice/.hidden")
    assert response.status_code == 400
    assert "project_name must be" in response.json()["message"]


def test_same_profile_and_project_twice_is_409(client: httpx.Client) -> None:
    body = start_body()
    assert client.post("/starttraining/", json=body).status_code == 202
    again = client.post("/starttraining/", json=body | {"epochs": 20})
    assert again.status_code == 409
    assert again.json()["status"] == "FAILED"
    assert "already exists" in again.json()["message"]


def test_same_project_name_under_another_profile_is_allowed(client: httpx.Client) -> None:
    body = start_body()
    assert client.post("/starttraining/", json=body).status_code == 202
    assert client.post("/starttraining/", json=body | {"profile_id": "bob"}).status_code == 202


def test_thirty_concurrent_identical_starts_create_one_training(
    client: httpx.Client, settings: ApiSettings
) -> None:
    body = start_body()
    with ThreadPoolExecutor(30) as pool:
        codes = sorted(
            pool.map(lambda _: client.post("/starttraining/", json=body).status_code, range(30))
        )
    assert codes == [202] + [409] * 29
    assert len(jobs_of(settings).list_profile("alice")) == 1
    assert queue_of(settings).depth() == 1


def test_list_is_newest_first(client: httpx.Client) -> None:
    names = []
    for _ in range(3):
        body = start_body()
        names.append(body["project_name"])
        assert client.post("/starttraining/", json=body).status_code == 202
    listing = client.get("/trainings/alice").json()
    assert listing["profile_id"] == "alice"
    assert [item["project_name"] for item in listing["trainings"]] == names[::-1]
    assert {item["result"] for item in listing["trainings"]} == {"PENDING"}


def test_delete_refuses_a_training_in_progress(client: httpx.Client) -> None:
    body = start_body()
    client.post("/starttraining/", json=body)
    response = client.delete(f"/trainings/alice/{body['project_name']}")
    assert response.status_code == 409
    assert "PENDING" in response.json()["message"]


def finished_with_a_model(client: httpx.Client, settings: ApiSettings) -> tuple[dict, Any]:
    """A training of alice's that ended SUCCESS with alice/<name>/model.onnx delivered."""
    body = start_body()
    client.post("/starttraining/", json=body)
    finish(settings, "alice", body["project_name"], State.SUCCESS)
    artifacts = StorageAccount(settings).artifacts()
    artifacts.upload_bytes(b"model", f"alice/{body['project_name']}/model.onnx")
    return body, artifacts


def test_delete_of_a_finished_training_removes_row_and_blobs_and_frees_the_name(
    client: httpx.Client, settings: ApiSettings
) -> None:
    body, artifacts = finished_with_a_model(client, settings)
    name = body["project_name"]
    artifacts.upload_bytes(b"resume", f".resume/alice/{name}/checkpoint_last.pt")
    artifacts.upload_bytes(b"other", f"alice/{name}-2/model.onnx")  # a neighbour: must stay
    response = client.delete(f"/trainings/alice/{name}")
    assert response.status_code == 200
    assert artifacts.list(f"alice/{name}/") == []
    assert artifacts.list(f".resume/alice/{name}/") == []
    assert artifacts.list(f"alice/{name}-2/") == [f"alice/{name}-2/model.onnx"]
    assert client.get(f"/statustraining/alice/{name}").status_code == 404
    assert client.post("/starttraining/", json=body).status_code == 202


def test_delete_finishes_what_an_interrupted_delete_began(
    client: httpx.Client, settings: ApiSettings
) -> None:
    """A DELETE that marked the row and stopped (crash, conflict) left a row naming no files."""
    body, artifacts = finished_with_a_model(client, settings)
    name = body["project_name"]

    def interrupted(row: object) -> None:
        row.deleting, row.message = True, "being deleted"  # type: ignore[attr-defined]
        row.exports = {}  # type: ignore[attr-defined]

    jobs_of(settings).modify("alice", name, interrupted)
    status = client.get(f"/statustraining/alice/{name}").json()
    assert (status["message"], status["exports"]) == ("being deleted", {})
    response = client.delete(f"/trainings/alice/{name}")
    assert response.status_code == 200
    assert response.json()["message"] == f"training '{name}' deleted (1 files)"
    assert artifacts.list(f"alice/{name}/") == []
    assert client.get(f"/statustraining/alice/{name}").status_code == 404


def test_cancel_of_a_queued_training_ends_it(client: httpx.Client) -> None:
    body = start_body()
    client.post("/starttraining/", json=body)
    response = client.post(f"/canceltraining/alice/{body['project_name']}")
    assert response.status_code == 200
    assert response.json()["result"] == "CANCELLED"
    again = client.post(f"/canceltraining/alice/{body['project_name']}")
    assert again.status_code == 409


def test_cancel_of_a_running_training_asks_the_worker(
    client: httpx.Client, settings: ApiSettings
) -> None:
    body = start_body()
    client.post("/starttraining/", json=body)
    finish(settings, "alice", body["project_name"], State.RUNNING)
    response = client.post(f"/canceltraining/alice/{body['project_name']}")
    assert response.json()["result"] == "RUNNING"
    assert response.json()["message"] == "cancel requested"
    row, _ = jobs_of(settings).get("alice", body["project_name"])  # type: ignore[misc]
    assert row.cancel_requested


def test_limited_token_sees_other_profiles_exactly_as_missing(
    client: httpx.Client, api_url: str
) -> None:
    secret_project = start_body(profile_id="carol")
    client.post("/starttraining/", json=secret_project)
    limited = httpx.Client(base_url=api_url, headers={"Authorization": LIMITED_TOKEN})
    name = secret_project["project_name"]
    hidden = limited.get(f"/statustraining/carol/{name}")
    missing = limited.get("/statustraining/carol/never-existed")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["message"] == f"no training '{name}' for profile 'carol'"
    assert limited.get("/trainings/carol").status_code == 404
    assert limited.delete(f"/trainings/carol/{name}").status_code == 404
    assert limited.post(f"/canceltraining/carol/{name}").status_code == 404
    refused = limited.post("/starttraining/", json=start_body(profile_id="carol"))
    assert refused.status_code == 403
    assert limited.post("/starttraining/", json=start_body(profile_id="bob")).status_code == 202


def test_checkserver_fails_without_a_fresh_worker_and_passes_with_one(
    client: httpx.Client, settings: ApiSettings, api_url: str
) -> None:
    limited = httpx.Client(base_url=api_url, headers={"Authorization": LIMITED_TOKEN})
    client.post("/starttraining/", json=start_body())
    response = client.get("/checkserver/")
    assert response.status_code == 503
    assert response.json() == {
        "result": "Failed",
        "message": "no worker online; 0 workers online, 1 job waiting",
    }
    # The service-wide counts are not a profile-limited token's to see.
    assert limited.get("/checkserver/").json() == {
        "result": "Failed",
        "message": "no worker online",
    }
    WorkersTable(StorageAccount(settings).table(settings.workers_table)).heartbeat(
        "gpu-vm-1", "NVIDIA H100", None, device="cuda", precision="bf16"
    )
    response = client.get("/checkserver/")
    assert response.status_code == 200
    assert response.json() == {"result": "Ok", "message": "1 worker online, 1 job waiting"}
    assert limited.get("/checkserver/").json() == {"result": "Ok", "message": "workers online"}


def test_storage_down_answers_503_not_500(azurite: Azurite) -> None:
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    settings = ApiSettings(
        env="dev",
        storage_connection_string=azurite.connection_string.split("BlobEndpoint")[0]
        + f"BlobEndpoint={dead};QueueEndpoint={dead};TableEndpoint={dead};",
        api_tokens=TOKEN,
    )
    server = ApiServer(create_app(settings)).start()
    try:
        headers = {"Authorization": TOKEN}
        start = httpx.post(f"{server.url}/starttraining/", json=start_body(), headers=headers)
        assert start.status_code == 503
        assert start.json()["status"] == "FAILED"
        assert "storage is unavailable" in start.json()["message"]
        status = httpx.get(f"{server.url}/statustraining/alice/x", headers=headers)
        assert status.status_code == 503
        check = httpx.get(f"{server.url}/checkserver/", headers=headers)
        assert check.status_code == 503
        assert check.json()["result"] == "Failed"
    finally:
        server.stop()


def test_enqueue_failure_removes_the_row_and_keeps_the_name_usable(azurite: Azurite) -> None:
    settings = fresh_settings(azurite)
    broken = settings.model_copy(update={"jobs_queue": "queue-that-was-never-created"})
    body = start_body()
    server = ApiServer(create_app(broken)).start()
    try:
        response = httpx.post(
            f"{server.url}/starttraining/", json=body, headers={"Authorization": TOKEN}
        )
    finally:
        server.stop()
    assert response.status_code == 503
    assert jobs_of(settings).get("alice", body["project_name"]) is None
    working = ApiServer(create_app(settings)).start()
    try:
        again = httpx.post(
            f"{working.url}/starttraining/", json=body, headers={"Authorization": TOKEN}
        )
    finally:
        working.stop()
    assert again.status_code == 202


def test_outside_dev_a_webhook_must_be_public_https(azurite: Azurite) -> None:
    settings = fresh_settings(azurite, webhook_allow_private=False)
    server = ApiServer(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": TOKEN}) as http:
            cases = {
                "http://93.184.215.14/hook": "webhook_url must use https",
                "https://127.0.0.1/hook": "non-public address",
                "https://10.1.2.3/hook": "non-public address",
                "https://169.254.169.254/latest": "non-public address",
                "https://[::1]/hook": "non-public address",
            }
            for url, expected in cases.items():
                response = http.post("/starttraining/", json=start_body(webhook_url=url))
                assert response.status_code == 400, url
                assert expected in response.json()["message"], url
            public = http.post(
                "/starttraining/", json=start_body(webhook_url="https://93.184.215.14/hook")
            )
            assert public.status_code == 202
    finally:
        server.stop()


def test_queue_message_names_the_row_and_carries_no_parameters(
    client: httpx.Client, settings: ApiSettings
) -> None:
    body = start_body()
    client.post("/starttraining/", json=body)
    raw = json.loads(queue_of(settings).receive(30).content)  # type: ignore[union-attr]
    assert set(raw) == {"version", "profile_id", "project_name", "job_id", "sealed_credentials"}
    row = jobs_of(settings).get("alice", body["project_name"])
    assert row is not None and row[0].job_id == raw["job_id"] and len(raw["job_id"]) == 32
