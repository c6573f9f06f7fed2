import base64
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from function_app.api import ApiSettings
from function_app.auth import parse_tokens
from shared.contract import DEFAULT_MAX_BATCH_SIZE
from shared.settings import (
    AZURITE_CONNECTION_STRING,
    AZURITE_KEY,
    DEV_API_TOKEN,
    DEV_SEALING_KEY,
)

REPO = Path(__file__).resolve().parents[2]

REAL_KEY = base64.b64encode(b"k" * 32).decode()
STORAGE = (
    "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA==;EndpointSuffix=core.windows.net"
)


def prod(**values: object) -> ApiSettings:
    base: dict[str, object] = {
        "env": "prod",
        "storage_connection_string": STORAGE,
        "sealing_key": REAL_KEY,
        "webhook_secret": "a-real-webhook-secret-from-key-vault",
        "api_tokens": "s3cret-token",
    }
    return ApiSettings(**(base | values))  # type: ignore[arg-type]


def test_prod_with_safe_values_starts() -> None:
    assert prod().env == "prod"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"api_tokens": None}, "AITRAINER_API_TOKENS must be set"),
        ({"api_tokens": " "}, "AITRAINER_API_TOKENS must be set"),
        ({"api_tokens": "dev-token"}, "published dev token"),
        ({"api_tokens": "s3cret=alice|"}, "AITRAINER_API_TOKENS item 1"),
        ({"sealing_key": None}, "AITRAINER_SEALING_KEY must be set"),
        ({"sealing_key": DEV_SEALING_KEY}, "published example key"),
        ({"sealing_key": base64.b64encode(b"short").decode()}, "base64 encoding of 32 bytes"),
        ({"sealing_key": "not base64!"}, "base64 encoding of 32 bytes"),
        ({"sealing_old_keys": f"{REAL_KEY},c2hvcnQ="}, "each of AITRAINER_SEALING_OLD_KEYS"),
        ({"storage_connection_string": None}, "STORAGE_CONNECTION_STRING or"),
    ],
)
def test_prod_refuses_unsafe_values(values: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        prod(**values)


def test_the_key_ring_holds_the_current_key_and_the_retired_ones() -> None:
    old = [base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2)]
    ring = prod(sealing_old_keys=f" {old[0]} ,{old[1]},").sealing_ring()
    assert ring.current == b"k" * 32
    assert ring.retired == (b"\x01" * 32, b"\x02" * 32)
    assert prod().sealing_ring().retired == ()


def test_dev_fills_documented_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRAINER_ENV", "dev")
    settings = ApiSettings()
    assert settings.api_tokens is not None
    assert settings.api_tokens.get_secret_value() == "dev-token"
    assert settings.sealing_ring().current == b"dev-only-sealing-key-32-bytes!!!"
    assert settings.storage_connection_string is not None
    assert settings.storage_connection_string.get_secret_value() == AZURITE_CONNECTION_STRING


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AITRAINER_ENV", "dev")
    monkeypatch.setenv("AITRAINER_MAX_BATCH_SIZE", "128")
    monkeypatch.setenv("AITRAINER_TRAININGS_TABLE", "mytrainings")
    settings = ApiSettings()
    assert (settings.max_batch_size, settings.trainings_table) == (128, "mytrainings")


def test_token_list_with_profile_limits() -> None:
    grants = parse_tokens("alpha, beta=alice|bob ,gamma=")
    assert [(g.token, g.profiles) for g in grants] == [
        (b"alpha", None),
        (b"beta", frozenset({"alice", "bob"})),
        (b"gamma=", None),  # no profile list after the '=': base64 padding, the token's
    ]
    assert grants[1].allows("alice") and not grants[1].allows("carol")


def test_the_example_local_settings_hold_the_dev_values_the_code_defines() -> None:
    """local.settings.example.json cannot import them: this ties the copies together."""
    values = json.loads((REPO / "local.settings.example.json").read_text())["Values"]
    assert values["AITRAINER_STORAGE_CONNECTION_STRING"] == AZURITE_CONNECTION_STRING
    assert f"AccountKey={AZURITE_KEY};" in AZURITE_CONNECTION_STRING
    assert values["AITRAINER_SEALING_KEY"] == DEV_SEALING_KEY
    assert values["AITRAINER_API_TOKENS"] == DEV_API_TOKEN
    assert values["AITRAINER_MAX_BATCH_SIZE"] == str(DEFAULT_MAX_BATCH_SIZE)
