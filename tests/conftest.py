"""Session fixtures: real servers started once, fresh storage names for every test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from dev.stack import ApiServer, Azurite, start_azurite
from function_app.api import ApiSettings, create_app
from shared.storage.account import StorageAccount

TOKEN = "test-token"
LIMITED_TOKEN = "limited-token"  # may only see the profiles alice and bob


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    yield server
    server.stop()


def unique_name(prefix: str) -> str:
    """A table/queue/container name no other test uses (letters and digits only)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def fresh_settings(azurite: Azurite, **overrides: object) -> ApiSettings:
    """Dev settings on Azurite with table, queue and container names nobody else uses."""
    values: dict[str, object] = {
        "env": "dev",
        "storage_connection_string": azurite.connection_string,
        "trainings_table": unique_name("trainings"),
        "workers_table": unique_name("workers"),
        "jobs_queue": unique_name("jobs"),
        "poison_queue": unique_name("poison"),
        "models_container": unique_name("models"),
        "api_tokens": f"{TOKEN},{LIMITED_TOKEN}=alice|bob",
        # Tests share one token across many starts; test_fair_use sets its own cap.
        "max_active_per_token": 1000,
    }
    settings = ApiSettings(**(values | overrides))  # type: ignore[arg-type]
    StorageAccount(settings).provision()
    return settings


@pytest.fixture
def settings(azurite: Azurite) -> ApiSettings:
    return fresh_settings(azurite)


@pytest.fixture
def storage(settings: ApiSettings) -> StorageAccount:
    return StorageAccount(settings)


@pytest.fixture
def api_url(settings: ApiSettings) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 serving the API for this test's settings."""
    server = ApiServer(create_app(settings)).start()
    yield server.url
    server.stop()


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as http:
        yield http
