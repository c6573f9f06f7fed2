"""Storage by account URL and managed identity: what the Bicep template configures in Azure."""

from __future__ import annotations

import base64
import os

import pytest
from azure.identity import DefaultAzureCredential
from pydantic import ValidationError

from dev.stack import Azurite
from shared.settings import CommonSettings
from shared.storage.account import StorageAccount

SEALING_KEY = base64.b64encode(os.urandom(32)).decode()
HOOKS = "webhook-master-secret-from-key-vault"
URL = "https://aitrainerst.{service}.core.windows.net"


def test_prod_accepts_an_account_url_without_any_connection_string() -> None:
    settings = CommonSettings(
        env="prod", storage_account_url=URL, sealing_key=SEALING_KEY, webhook_secret=HOOKS
    )
    assert settings.storage_connection_string is None
    with pytest.raises(ValidationError, match="STORAGE_ACCOUNT_URL must be set"):
        CommonSettings(env="prod", sealing_key=SEALING_KEY, webhook_secret=HOOKS)


def test_an_account_url_builds_every_client_on_its_service_endpoint_with_the_identity() -> None:
    account = StorageAccount(
        CommonSettings(
            env="prod", storage_account_url=URL, sealing_key=SEALING_KEY, webhook_secret=HOOKS
        )
    )
    assert account.table("trainings").url.startswith("https://aitrainerst.table.core.windows.net")
    assert account.queue("training-jobs").url == (
        "https://aitrainerst.queue.core.windows.net/training-jobs"
    )
    assert account.container("models").url == "https://aitrainerst.blob.core.windows.net/models"
    for client in (account.tables, account.queues, account.blobs):
        assert isinstance(client.credential, DefaultAzureCredential)


def test_a_connection_string_wins_over_an_account_url(azurite: Azurite) -> None:
    settings = CommonSettings(
        env="dev", storage_connection_string=azurite.connection_string, storage_account_url=URL
    )
    account = StorageAccount(settings)
    assert account.blobs.url.startswith("http://127.0.0.1:")
    account.blobs.get_service_properties()  # Azurite answers: the key, not the identity, signed
