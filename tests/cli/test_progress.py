"""Following a training: ETA from the last epoch, and riding out a briefly unreachable API."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from rich.console import Console

from cli.client import ApiClient
from cli.config import ApiConfig
from cli.errors import CliError
from cli.progress import eta_seconds, figures, follow
from shared.contract import StatusResponse

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def status_body(result: str = "RUNNING", epoch: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "result": result,
        "current_epoch": epoch,
        "epochs": 4,
        "loss": 0.5,
        "accuracy": 0.875,
        "lastupdate": NOW.isoformat(),
        "last_epoch_duration_seconds": 10.0,
        "message": f"epoch {epoch}/4",
        "profile_id": "alice",
        "project_name": "shapes",
        "created": NOW.isoformat(),
        "parameters": {
            "epochs": 4,
            "learning_rate": 0.01,
            "image_size": 32,
            "batch_size": 8,
            "step_size": 10,
            "gamma": 0.1,
            "export": ["onnx"],
            "model_type": "classification",
            "architecture": "resnet18",
        },
        **extra,
    }


def test_eta_counts_the_remaining_epochs_from_the_last_ones_duration() -> None:
    status = StatusResponse.model_validate(status_body())
    assert eta_seconds(status, NOW + timedelta(seconds=4)) == 26  # 3 epochs of 10 s, 4 s in
    # A slow epoch, or a client clock ahead of the server's, never counts more than one epoch.
    assert eta_seconds(status, NOW + timedelta(minutes=5)) == 20
    assert eta_seconds(status, NOW - timedelta(minutes=5)) == 30
    pending = StatusResponse.model_validate(status_body("PENDING", 0))
    assert eta_seconds(pending, NOW) is None
    assert figures(pending) == "epoch 0/4 · loss 0.5 · accuracy 87.5%"
    body = status_body()
    body["parameters"] |= {"model_type": "detection", "architecture": "fcos_resnet50_fpn"}
    detector = StatusResponse.model_validate(body)
    assert figures(detector).startswith("epoch 1/4 · loss 0.5 · mAP@0.5 87.5%")


def test_following_rides_out_an_unreachable_api_and_returns_the_final_status() -> None:
    answers: list[Any] = [
        status_body(),
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        status_body(epoch=4),
        status_body("SUCCESS", 4),
    ]

    def respond(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(200, json=answer)

    config = ApiConfig.build("http://api.test", "t0ken")
    out = io.StringIO()
    with ApiClient(config, httpx.MockTransport(respond)) as client:
        final = follow(client, "alice", "shapes", Console(file=out), sleep=lambda _: None)
    assert final.result == "SUCCESS" and not answers
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("RUNNING     epoch 1/4 · loss 0.5 · accuracy 87.5% — epoch 1/4")
    assert lines[1] == "cannot reach the API at http://api.test; retrying"
    assert lines[-1].startswith("SUCCESS     epoch 4/4")


def test_following_stops_at_once_when_the_training_is_gone() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "no training 'shapes' for profile 'alice'"})

    config = ApiConfig.build("http://api.test", "t0ken")
    with ApiClient(config, httpx.MockTransport(respond)) as client, pytest.raises(CliError) as gone:
        follow(client, "alice", "shapes", Console(file=io.StringIO()), sleep=lambda _: None)
    assert gone.value.message == "no training 'shapes' for profile 'alice'"
