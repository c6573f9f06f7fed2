"""Outside dev, a start request's connection string must name public Azure Storage over https.

Real uvicorn and Azurite; only name lookups of the made-up storage hosts below are answered
by replacing `socket.getaddrinfo` in this process, as our VNet's DNS would answer them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from dev.stack import ApiServer, Azurite
from function_app.api import create_app
from tests.conftest import TOKEN, fresh_settings
from tests.function_app.helpers import aws_body, start_body

KEY = "c2VjcmV0LWtleS1uZXZlci10by1iZS1sZWFrZWQtYW55d2hlcmU="
DNS = {
    "clinic.blob.core.windows.net": "20.60.1.1",
    "clinic.privatelink.blob.core.windows.net": "10.1.2.3",
}


@pytest.fixture(autouse=True)
def dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real: Callable[..., Any] = socket.getaddrinfo

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in DNS:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (DNS[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


@contextmanager
def api(azurite: Azurite) -> Iterator[httpx.Client]:
    """The API with production's dataset rules (public Azure Storage only), on loopback."""
    settings = fresh_settings(azurite, dataset_allow_private=False)
    server = ApiServer(create_app(settings)).start()
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": TOKEN}, timeout=30
        ) as http:
            yield http
    finally:
        server.stop()


def endpoint(url: str) -> str:
    return f"BlobEndpoint={url};SharedAccessSignature=sv=2024&sig={KEY}"


@pytest.mark.parametrize(
    "connection_string",
    [
        endpoint("http://clinic.blob.core.windows.net"),
        endpoint("https://127.0.0.1:10000/devstoreaccount1"),
        endpoint("https://10.0.0.5:8080/x"),
        endpoint("https://169.254.169.254/metadata"),
        endpoint("https://[fd00::1]/x"),
        endpoint("https://intranet.example.org/x"),
        endpoint("https://clinic.privatelink.blob.core.windows.net"),
        "UseDevelopmentStorage=true",
    ],
    ids=["http", "loopback", "private", "metadata", "ula", "not azure", "privatelink", "emulator"],
)
def test_a_dataset_endpoint_into_our_network_is_a_400_naming_the_field(
    azurite: Azurite, connection_string: str
) -> None:
    with api(azurite) as http:
        response = http.post(
            "/starttraining/", json=start_body(azure_connection_string=connection_string)
        )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "FAILED" and body["message"].startswith("azure_connection_string")
    assert KEY not in response.text


def test_a_public_account_is_accepted(azurite: Azurite) -> None:
    with api(azurite) as http:
        good = start_body(azure_connection_string=endpoint("https://clinic.blob.core.windows.net"))
        assert http.post("/starttraining/", json=good).status_code == 202


def test_the_s3_endpoint_comes_from_the_workers_settings_never_from_a_request(
    azurite: Azurite,
) -> None:
    with api(azurite) as http:
        for field in ("aws_endpoint_url", "endpoint_url", "s3_endpoint"):
            body = aws_body(**{field: "http://169.254.169.254/"})
            response = http.post("/starttraining/", json=body)
            assert response.status_code == 400, (field, response.text)
            assert field in response.json()["message"]
