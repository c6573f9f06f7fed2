import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contract import (
    DatasetLocation,
    StartTrainingRequest,
    State,
    TrainingParams,
    TrainingRow,
    describe_validation_error,
    identifier_problem,
    webhook_url_problem,
)

AUGMENTATION_FIELDS = ("augmentation", "horizontal_flip")


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (State.PENDING, State.DOWNLOADING, True),
        (State.DOWNLOADING, State.RUNNING, True),
        (State.RUNNING, State.RUNNING, True),
        (State.RUNNING, State.DOWNLOADING, False),
        (State.EXPORTING, State.RUNNING, False),
        (State.PENDING, State.FAILED, True),
        (State.RUNNING, State.CANCELLED, True),
        (State.SUCCESS, State.FAILED, False),
        (State.FAILED, State.RUNNING, False),
        (State.CANCELLED, State.SUCCESS, False),
    ],
)
def test_states_only_move_forward(old: State, new: State, allowed: bool) -> None:
    assert old.can_move_to(new) is allowed


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("alice", True),
        ("a", True),
        ("Dr. Who@x_1-2", True),
        ("", False),
        (".a", False),
        ("a ", False),
        ("a/b", False),
        ("a\\b", False),
        ("a#b", False),
        ("a?b", False),
        ("é", False),
        ("x" * 256, True),
        ("x" * 257, False),
    ],
)
def test_identifier_rule(value: str, valid: bool) -> None:
    assert (identifier_problem(value) is None) is valid


def test_row_survives_the_table_round_trip() -> None:
    row = TrainingRow(
        profile_id="alice",
        project_name="teeth",
        state=State.RUNNING,
        params=TrainingParams(
            epochs=3,
            learning_rate=0.1,
            image_size=64,
            batch_size=8,
            step_size=1,
            gamma=0.5,
            export=["onnx"],
            model_type="classification",
            architecture="resnet18",
        ),
        dataset=DatasetLocation(storage_type="aws", container="b", folder="f", zipped=True),
        loss=0.25,
        accuracy=1.0,
        current_epoch=2,
        exports={"onnx": "alice/teeth/model.onnx"},
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    entity = row.to_entity()
    assert entity["PartitionKey"] == "alice" and entity["RowKey"] == "teeth"
    assert "last_epoch_duration_seconds" not in entity  # None is omitted, not stored
    assert TrainingRow.from_entity(entity) == row


def test_a_webhook_host_whose_lookup_hangs_is_refused_after_the_given_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    released = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hangs.example.com":
            return real(host, *args, **kwargs)
        released.wait(15)
        raise socket.gaierror("released")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    began = time.monotonic()
    try:
        problem = webhook_url_problem(
            "https://hangs.example.com/hook", allow_private=False, resolve_seconds=0.2
        )
    finally:
        released.set()
    assert problem == "webhook_url host 'hangs.example.com' did not resolve within 0.2 s"
    assert time.monotonic() - began < 1


def start_body(**extra: Any) -> dict[str, Any]:
    return {
        "profile_id": "alice",
        "project_name": "teeth",
        "model_type": "classification",
        "storage_type": "aws",
        "container": "bucket",
        "folder": "photos",
        "zipped": False,
        "aws_access_key_id": "AKIAEXAMPLE",
        "aws_secret_access_key": "secret",
        **extra,
    }


def test_augmentation_and_flip_default_to_auto_and_true_and_reach_the_row() -> None:
    request = StartTrainingRequest.model_validate(start_body())
    assert (request.augmentation, request.horizontal_flip) == ("auto", True)
    chosen = StartTrainingRequest.model_validate(
        start_body(augmentation="none", horizontal_flip=False)
    )
    params = TrainingRow.from_request(chosen, None, "job").params
    assert (params.augmentation, params.horizontal_flip) == ("none", False)
    # A row written before the fields existed reads as the defaults.
    old = {k: v for k, v in params.model_dump().items() if k not in AUGMENTATION_FIELDS}
    assert TrainingParams.model_validate(old).augmentation == "auto"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"augmentation": "heavy"}, "augmentation must be one of 'auto', 'none', 'light'"),
        ({"horizontal_flip": "no"}, "horizontal_flip must be"),
    ],
)
def test_bad_augmentation_fields_are_refused_naming_them(
    extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        StartTrainingRequest.model_validate(start_body(**extra))
    assert message in describe_validation_error(refused.value)
