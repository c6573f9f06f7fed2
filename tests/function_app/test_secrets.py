"""Credentials sent to the API appear nowhere in clear: rows, messages, responses, logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from function_app.api import ApiSettings
from shared.contract import JobMessage
from shared.sealing import unseal
from shared.storage.account import StorageAccount
from tests.function_app.helpers import AWS_KEY_ID, AWS_SECRET, AZURE_SECRET, aws_body, start_body

SECRETS = [
    AZURE_SECRET,
    AWS_KEY_ID,
    AWS_SECRET,
    "c2VjcmV0LWtleS1uZXZlci10by1iZS1sZWFrZWQ",
    "session-token-XYZ",
]


def test_credentials_reach_only_the_sealed_message(
    client: httpx.Client, settings: ApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    azure = start_body()
    aws = aws_body(aws_session_token="session-token-XYZ")
    responses = [
        client.post("/starttraining/", json=azure),
        client.post("/starttraining/", json=aws),
        client.post("/starttraining/", json=azure),  # 409
        client.post(
            "/starttraining/", json=start_body(epochs=0, azure_connection_string=AZURE_SECRET)
        ),
        client.get(f"/statustraining/alice/{azure['project_name']}"),
        client.get("/trainings/alice"),
    ]
    assert [r.status_code for r in responses] == [202, 202, 409, 400, 200, 200]

    account = StorageAccount(settings)
    rows = list(account.table(settings.trainings_table).list_entities())
    queue = account.queue(settings.jobs_queue)
    messages = [m.content for m in queue.peek_messages(max_messages=32)]
    assert len(rows) == 2 and len(messages) == 2

    haystacks = {
        "rows": repr(rows),
        "messages": "\n".join(messages),
        "responses": "\n".join(r.text for r in responses),
        "logs": caplog.text + repr([r.__dict__ for r in caplog.records]),
    }
    for where, text in haystacks.items():
        for secret in SECRETS:
            assert secret not in text, f"a credential leaked into {where}"

    # ...yet the worker can open what it needs, for that job only.
    ring = settings.sealing_ring()
    opened = {}
    for content in messages:
        message = JobMessage.model_validate_json(content)
        opened[message.project_name] = unseal(
            message.sealed_credentials,
            ring,
            message.profile_id,
            message.project_name,
            message.job_id,
        )
    assert opened[azure["project_name"]] == {"azure_connection_string": AZURE_SECRET}
    assert opened[aws["project_name"]] == {
        "aws_access_key_id": AWS_KEY_ID,
        "aws_secret_access_key": AWS_SECRET,
        "aws_session_token": "session-token-XYZ",
    }
