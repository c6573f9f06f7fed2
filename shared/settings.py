"""Settings read from `AITRAINER_*` environment variables, one class per deployable.

`CommonSettings` holds what the API and the worker share (storage, names, sealing);
`function_app.settings.ApiSettings` and the worker's settings extend it. Outside dev, unsafe
values (no tokens, the example sealing key) stop the process at startup.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.connection_strings import AZURE_STORAGE_SUFFIXES
from shared.contract import DEFAULT_MAX_BATCH_SIZE
from shared.sealing import KeyRing
from shared.webhook_keys import tenant_webhook_secret

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_PORTS = (10000, 10001, 10002)  # Azurite's blob, queue and table defaults


def azurite_connection_string(blob_port: int, queue_port: int, table_port: int) -> str:
    """The connection string of an Azurite listening on these loopback ports."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint={base}:{queue_port}/{AZURITE_ACCOUNT};"
        f"TableEndpoint={base}:{table_port}/{AZURITE_ACCOUNT};"
    )


AZURITE_CONNECTION_STRING = azurite_connection_string(*AZURITE_PORTS)
# Published in README and local.settings.example.json, so refused outside dev.
DEV_SEALING_KEY = "ZGV2LW9ubHktc2VhbGluZy1rZXktMzItYnl0ZXMhISE="
DEV_API_TOKEN = "dev-token"  # noqa: S105 - the documented dev token, refused outside dev
DEV_WEBHOOK_SECRET = "dev-webhook-secret"  # noqa: S105 - refused outside dev


class CommonSettings(BaseSettings):
    """What the API and the worker both need."""

    model_config = SettingsConfigDict(env_prefix="AITRAINER_", extra="ignore")

    env: Literal["dev", "prod"] = "prod"
    storage_connection_string: SecretStr | None = None
    storage_account_url: str | None = Field(
        default=None,
        description="https://<account>.{service}.core.windows.net base, used with managed "
        "identity when no connection string is set",
    )
    trainings_table: str = "trainings"
    workers_table: str = "workers"
    idempotency_table: str = "idempotency"
    jobs_queue: str = "training-jobs"
    poison_queue: str = "training-jobs-poison"
    models_container: str = "models"
    sealing_key: SecretStr | None = None
    # Rotation (docs/deploy.md): the new key becomes AITRAINER_SEALING_KEY, the old one moves
    # here and keeps opening the jobs queued under it until they have all ended.
    sealing_old_keys: SecretStr | None = Field(
        default=None, description="comma-separated retired sealing keys (base64, 32 bytes)"
    )
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    sas_lifetime_seconds: int = Field(
        default=3600, ge=60, description="how long a download URL in a status answer works"
    )
    worker_fresh_seconds: int = Field(
        default=120, description="a worker whose heartbeat is older counts as offline"
    )
    # A tenant's azure_connection_string must name public Azure Storage over https; dev and
    # tests read datasets from Azurite on loopback. None: allowed in dev only.
    dataset_allow_private: bool | None = None
    azure_storage_suffixes: str = Field(
        default=",".join(AZURE_STORAGE_SUFFIXES),
        description="comma-separated: blob endpoints must end in .blob.<one of these>",
    )

    @property
    def dataset_rules(self) -> dict[str, Any]:
        """connection_string_problem's rules for tenants' endpoints, as the API (at the
        request) and the worker (before it connects) both apply them."""
        allow_private = self.dataset_allow_private
        suffixes = [part.strip() for part in self.azure_storage_suffixes.split(",") if part]
        return {
            "allow_private": self.env == "dev" if allow_private is None else allow_private,
            "suffixes": suffixes,
        }

    # The master secret: each profile's webhooks are signed with a key derived from it
    # (shared/webhook_keys.py), which the API hands to that profile's tokens.
    webhook_secret: SecretStr | None = None

    def tenant_webhook_secret(self, profile_id: str) -> str:
        assert self.webhook_secret is not None  # filled in dev, required elsewhere
        return tenant_webhook_secret(self.webhook_secret.get_secret_value(), profile_id)

    @model_validator(mode="after")
    def _safe_outside_dev(self) -> CommonSettings:
        if self.env == "dev":
            if self.storage_connection_string is None and self.storage_account_url is None:
                self.storage_connection_string = SecretStr(AZURITE_CONNECTION_STRING)
            if self.sealing_key is None:
                self.sealing_key = SecretStr(DEV_SEALING_KEY)
            if self.webhook_secret is None:
                self.webhook_secret = SecretStr(DEV_WEBHOOK_SECRET)
        else:
            if self.storage_connection_string is None and self.storage_account_url is None:
                raise ValueError(
                    "AITRAINER_STORAGE_CONNECTION_STRING or AITRAINER_STORAGE_ACCOUNT_URL "
                    "must be set"
                )
            if self.sealing_key is None:
                raise ValueError("AITRAINER_SEALING_KEY must be set outside dev")
            if self.sealing_key.get_secret_value() == DEV_SEALING_KEY:
                raise ValueError("AITRAINER_SEALING_KEY is the published example key")
            if self.webhook_secret is None:
                raise ValueError("AITRAINER_WEBHOOK_SECRET must be set outside dev")
            if self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
                raise ValueError("AITRAINER_WEBHOOK_SECRET is the published dev secret")
        self.sealing_ring()  # fail at startup, not at the first request
        return self

    def sealing_ring(self) -> KeyRing:
        """The current sealing key and the retired ones that still open queued jobs."""
        assert self.sealing_key is not None  # set by the validator
        retired = self.sealing_old_keys.get_secret_value() if self.sealing_old_keys else ""
        return KeyRing(
            _sealing_key("AITRAINER_SEALING_KEY", self.sealing_key.get_secret_value()),
            tuple(
                _sealing_key("each of AITRAINER_SEALING_OLD_KEYS", item.strip())
                for item in retired.split(",")
                if item.strip()
            ),
        )


def _sealing_key(what: str, text: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValueError(f"{what} must be the base64 encoding of 32 bytes")
    return key
