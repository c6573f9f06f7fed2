"""Every rule of the start request, over HTTP, at both sides of each bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dev.stack import ApiServer, Azurite
from function_app.api import create_app
from tests.conftest import TOKEN, fresh_settings
from tests.function_app.helpers import DROP, aws_body, start_body


@pytest.fixture(scope="module")
def http(azurite: Azurite) -> Iterator[httpx.Client]:
    """One server for the module; every accepted request uses its own project name."""
    settings = fresh_settings(azurite, webhook_allow_private=True)
    server = ApiServer(create_app(settings)).start()
    with httpx.Client(base_url=server.url, headers={"Authorization": TOKEN}, timeout=30) as client:
        yield client
    server.stop()


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("epochs at minimum", {"epochs": 2}),
    ("epochs at maximum", {"epochs": 99}),
    ("learning_rate just above 0", {"learning_rate": 1e-9}),
    ("learning_rate at 1", {"learning_rate": 1}),
    ("image_size at minimum", {"image_size": 32}),
    ("image_size at maximum", {"image_size": 768}),
    ("batch_size at minimum", {"batch_size": 1}),
    ("batch_size at the configured maximum", {"batch_size": 36}),
    ("step_size at minimum", {"step_size": 1}),
    ("gamma at 1", {"gamma": 1}),
    ("gamma small", {"gamma": 0.001}),
    ("every export format", {"export": ["onnx", "coreml", "pytorchmobile", "torch"]}),
    ("duplicate exports", {"export": ["onnx", "onnx"]}),
    ("architecture chosen", {"architecture": "resnet18"}),
    (
        "every precision, for onnx beside fp32-only formats",
        {"export_precision": ["int8", "fp32", "fp16", "int8"], "export": ["onnx", "torch"]},
    ),
    ("export_tolerance at 0", {"export_precision": ["fp32", "int8"], "export_tolerance": 0}),
    ("export_tolerance at 1", {"export_tolerance": 1}),
    ("architecture empty means default", {"architecture": ""}),
    ("detection with defaults", {"model_type": "detection"}),
    (
        "detection with every format it can carry",
        {"model_type": "detection", "export": ["onnx", "coreml", "torch"]},
    ),
    (
        "detection architecture chosen",
        {"model_type": "detection", "architecture": "fcos_resnet50_fpn"},
    ),
    ("folder empty means root", {"folder": ""}),
    ("folder with slashes", {"folder": "/clinic/2026/"}),
    ("zipped true", {"zipped": True}),
    ("webhook_url empty means absent", {"webhook_url": ""}),
    ("webhook_url null means absent", {"webhook_url": None}),
    ("webhook_url loopback http in dev", {"webhook_url": "http://127.0.0.1:9/hook"}),
    ("profile_id with every allowed character", {"profile_id": "Dr. Who_1@clinic-a"}),
    ("profile_id of 256 characters", {"profile_id": "p" * 256}),
    (
        "seed client sends empty aws fields",
        {"aws_access_key_id": "", "aws_secret_access_key": None},
    ),
]

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("profile_id missing", {"profile_id": DROP}, "profile_id is required"),
    ("profile_id empty", {"profile_id": ""}, "profile_id must be 1 to 256"),
    ("profile_id with slash", {"profile_id": "a/b"}, "profile_id must be 1 to 256"),
    ("profile_id leading space", {"profile_id": " a"}, "profile_id must be"),
    ("profile_id trailing dot", {"profile_id": "a."}, "profile_id must be"),
    ("profile_id of 257 characters", {"profile_id": "p" * 257}, "profile_id must be"),
    ("profile_id not a string", {"profile_id": 7}, "profile_id must be a string"),
    ("project_name missing", {"project_name": DROP}, "project_name is required"),
    ("project_name traversal", {"project_name": "../x"}, "project_name must be"),
    ("project_name with hash", {"project_name": "a#b"}, "project_name must be"),
    ("epochs below minimum", {"epochs": 1}, "epochs must be between 2 and 99 (got 1)"),
    ("epochs above maximum", {"epochs": 100}, "epochs must be between 2 and 99 (got 100)"),
    ("epochs as a string", {"epochs": "10"}, "epochs must be an integer"),
    ("epochs fractional", {"epochs": 10.5}, "epochs must be an integer"),
    ("epochs boolean", {"epochs": True}, "epochs must be an integer"),
    ("learning_rate zero", {"learning_rate": 0}, "learning_rate must be greater than 0"),
    ("learning_rate above one", {"learning_rate": 1.0001}, "at most 1 (got 1.0001)"),
    ("image_size below minimum", {"image_size": 31}, "image_size must be between 32 and 768"),
    ("image_size above maximum", {"image_size": 769}, "image_size must be between 32 and 768"),
    ("batch_size zero", {"batch_size": 0}, "batch_size must be between 1 and 36 (got 0)"),
    ("batch_size above maximum", {"batch_size": 37}, "batch_size must be between 1 and 36"),
    ("step_size zero", {"step_size": 0}, "step_size must be at least 1 (got 0)"),
    ("gamma zero", {"gamma": 0}, "gamma must be greater than 0 and at most 1 (got 0)"),
    ("gamma above one", {"gamma": 1.5}, "gamma must be greater than 0 and at most 1"),
    ("export empty", {"export": []}, "export must name at least one format"),
    ("export unknown", {"export": ["onnx", "gif"]}, "export has unknown format 'gif'"),
    ("export not a list", {"export": "onnx"}, "export must be a list"),
    (
        "export_precision without fp32",
        {"export_precision": ["int8"]},
        "export_precision must include fp32",
    ),
    (
        "export_precision unknown",
        {"export_precision": ["fp32", "bf16"]},
        "export_precision has unknown precision 'bf16' (allowed: fp32, fp16, int8)",
    ),
    (
        "export_precision no requested format makes",
        {"export_precision": ["fp32", "int8"], "export": ["pytorchmobile", "torch"]},
        "export_precision 'int8' is made for export formats onnx, coreml or executorch, and "
        "export names none of them (got pytorchmobile, torch)",
    ),
    (
        "export_precision for a detector",
        {"model_type": "detection", "export_precision": ["fp32", "fp16"]},
        "export_precision 'fp16' is for classification only",
    ),
    (
        "export_tolerance above one",
        {"export_tolerance": 1.5},
        "export_tolerance must be at least 0 and at most 1 (got 1.5)",
    ),
    ("export_tolerance negative", {"export_tolerance": -0.01}, "export_tolerance must be"),
    ("model_type unknown", {"model_type": "segmentation"}, "model_type must be one of"),
    ("model_type missing", {"model_type": DROP}, "model_type is required"),
    (
        "detection with pytorchmobile",
        {"model_type": "detection", "export": ["onnx", "pytorchmobile"]},
        "export format 'pytorchmobile' cannot carry a detector (allowed for detection: "
        "onnx, coreml, torch)",
    ),
    (
        "detection with executorch",
        {"model_type": "detection", "export": ["executorch"]},
        "'executorch' cannot carry a detector",
    ),
    (
        "detection coreml from a detector without fixed anchors",
        {"model_type": "detection", "architecture": "fcos_resnet50_fpn", "export": ["coreml"]},
        "export format 'coreml' needs architecture ssdlite320_mobilenet_v3_large for detection "
        "(got fcos_resnet50_fpn); use onnx or torch",
    ),
    (
        "detection with batch_size 1",
        {"model_type": "detection", "batch_size": 1},
        "batch_size must be at least 2 for detection (got 1)",
    ),
    (
        "detection with a classifier",
        {"model_type": "detection", "architecture": "resnet18"},
        "architecture 'resnet18' is not available for detection (allowed: ssdlite320",
    ),
    ("architecture unknown", {"architecture": "vgg11"}, "allowed: mobilenet_v3_large"),
    ("storage_type unknown", {"storage_type": "gcs"}, "storage_type must be one of"),
    ("container missing", {"container": DROP}, "container is required"),
    ("container empty", {"container": " "}, "container must be"),
    ("container with slash", {"container": "a/b"}, "container must be"),
    ("folder missing", {"folder": DROP}, "folder is required"),
    ("folder traversal", {"folder": "data/../etc"}, "folder must not contain"),
    ("zipped missing", {"zipped": DROP}, "zipped is required"),
    ("zipped as a string", {"zipped": "yes"}, "zipped must be true or false"),
    (
        "azure without connection string",
        {"azure_connection_string": DROP},
        "azure_connection_string is required",
    ),
    (
        "azure with empty connection string",
        {"azure_connection_string": ""},
        "azure_connection_string is required",
    ),
    (
        "webhook_url not http",
        {"webhook_url": "ftp://host/x"},
        "webhook_url must be an absolute http(s) URL",
    ),
    (
        "webhook_url not a URL",
        {"webhook_url": "hook"},
        "webhook_url must be an absolute http(s) URL",
    ),
    (
        "webhook_url with password",
        {"webhook_url": "https://u:p@example.com/"},
        "must not contain a user",
    ),
    ("unknown field", {"priority": "high"}, "unknown field 'priority'"),
]


@pytest.mark.parametrize(("case", "overrides"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_valid_request_is_accepted(
    http: httpx.Client, case: str, overrides: dict[str, Any]
) -> None:
    body = start_body(**overrides)
    response = http.post("/starttraining/", json=body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "PENDING"
    assert answer["profile_id"] == body["profile_id"]
    status = http.get(f"/statustraining/{body['profile_id']}/{body['project_name']}").json()
    assert status["result"] == "PENDING"


@pytest.mark.parametrize(("case", "overrides", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_invalid_field_is_refused_naming_the_rule(
    http: httpx.Client, case: str, overrides: dict[str, Any], expected: str
) -> None:
    response = http.post("/starttraining/", json=start_body(**overrides))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["status"] == "FAILED"
    assert expected in answer["message"]


@pytest.mark.parametrize("field", ["learning_rate", "gamma", "export_tolerance"])
def test_nan_is_refused_by_every_bound(http: httpx.Client, field: str) -> None:
    """Python's JSON parser reads a bare NaN, and NaN compares false with any bound."""
    content = json.dumps(start_body(**{field: float("nan")}))  # json.dumps writes NaN
    assert "NaN" in content
    response = http.post(
        "/starttraining/", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert f"{field} must be" in response.json()["message"]
    assert "(got nan)" in response.json()["message"]


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("aws_access_key_id", "aws_access_key_id is required when storage_type is 'aws'"),
        ("aws_secret_access_key", "aws_secret_access_key is required when storage_type is 'aws'"),
    ],
)
def test_aws_needs_both_keys(http: httpx.Client, missing: str, expected: str) -> None:
    response = http.post("/starttraining/", json=aws_body(**{missing: DROP}))
    assert response.status_code == 400
    assert expected in response.json()["message"]


def test_aws_request_answers_s3_dataset(http: httpx.Client) -> None:
    body = aws_body(aws_region="eu-west-1", aws_session_token="session", folder="teeth/set1")
    response = http.post("/starttraining/", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["dataset"] == "s3://clinic-bucket/teeth/set1"


def test_azure_request_answers_azure_dataset(http: httpx.Client) -> None:
    response = http.post("/starttraining/", json=start_body(folder="set1/"))
    assert response.json()["dataset"] == "azure://photos/set1"


def test_several_problems_are_all_named(http: httpx.Client) -> None:
    response = http.post("/starttraining/", json=start_body(epochs=0, gamma=3, zipped=DROP))
    message = response.json()["message"]
    for fragment in ("epochs must be", "gamma must be", "zipped is required"):
        assert fragment in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"", "body must be a JSON object"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'"text"', "body must be a JSON object"),
    ],
)
def test_body_that_is_not_a_json_object_is_refused(
    http: httpx.Client, content: bytes, expected: str
) -> None:
    response = http.post(
        "/starttraining/", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": "FAILED",
        "profile_id": None,
        "project_name": None,
        "dataset": None,
        "message": expected,
    }


def test_body_over_64_kib_is_refused_with_413(http: httpx.Client) -> None:
    body = start_body(folder="x" * (64 * 1024))
    response = http.post("/starttraining/", content=json.dumps(body).encode())
    assert response.status_code == 413
    assert "at most 65536 bytes" in response.json()["message"]


def test_body_over_64_kib_without_content_length_is_refused(http: httpx.Client) -> None:
    chunks = iter([b'{"folder": "', b"x" * (40 * 1024), b"y" * (40 * 1024), b'"}'])
    response = http.post("/starttraining/", content=chunks)  # chunked: no Content-Length
    assert response.status_code == 413


def test_defaults_and_duplicate_exports_reach_the_status(http: httpx.Client) -> None:
    body = start_body(export=["torch", "onnx", "torch"])
    assert http.post("/starttraining/", json=body).status_code == 202
    status = http.get(f"/statustraining/alice/{body['project_name']}").json()
    assert status["parameters"] == {
        "epochs": 10,
        "learning_rate": 0.01,
        "image_size": 224,
        "batch_size": 36,
        "step_size": 10,
        "gamma": 0.1,
        "export": ["torch", "onnx"],
        "model_type": "classification",
        "architecture": "mobilenet_v3_large",
        "augmentation": "auto",
        "horizontal_flip": True,
        "patience": None,
        "class_weighting": "auto",
        "test_fraction": None,
        "threshold_precision": 0.9,
        "leakage": "drop",
        "export_precision": ["fp32"],
        "export_tolerance": 0.01,
    }
    assert status["epochs"] == 10


def test_detection_defaults_to_the_mobile_detector(http: httpx.Client) -> None:
    body = start_body(model_type="detection")
    assert http.post("/starttraining/", json=body).status_code == 202
    status = http.get(f"/statustraining/alice/{body['project_name']}").json()
    assert status["parameters"]["model_type"] == "detection"
    assert status["parameters"]["architecture"] == "ssdlite320_mobilenet_v3_large"
    assert status["parameters"]["export"] == ["onnx", "coreml"]

    # The seed's default export includes coreml, which only SSDlite carries: a default
    # request for another detector gets what it can carry instead of a 400.
    body = start_body(model_type="detection", architecture="retinanet_resnet50_fpn_v2")
    assert http.post("/starttraining/", json=body).status_code == 202
    status = http.get(f"/statustraining/alice/{body['project_name']}").json()
    assert status["parameters"]["export"] == ["onnx"]
