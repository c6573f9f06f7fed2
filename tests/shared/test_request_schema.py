"""The start request's JSON Schema states the rules its validation enforces.

Generated clients and fuzzers build requests from the schema: whatever it allows must be
accepted, and its bounds must be the validators' bounds.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.connection_strings import connection_string_problem
from shared.contract import (
    CONNECTION_STRING_PATTERN,
    FOLDER_SCHEMA,
    IDENTIFIER_SCHEMA,
    StartTrainingRequest,
    identifier_problem,
)
from tests.function_app.helpers import start_body

FIELDS = StartTrainingRequest.model_json_schema()["properties"]


def accepts(**fields: Any) -> bool:
    try:
        StartTrainingRequest.model_validate(start_body(**fields))
    except ValidationError:
        return False
    return True


@given(st.text(max_size=300))
def test_the_identifier_pattern_is_the_identifier_rule(value: str) -> None:
    stated = re.fullmatch(IDENTIFIER_SCHEMA["pattern"], value) is not None
    assert stated == (identifier_problem(value) is None)


@given(st.from_regex(IDENTIFIER_SCHEMA["pattern"], fullmatch=True))
def test_every_identifier_the_schema_allows_is_accepted(value: str) -> None:
    assert accepts(profile_id=value, project_name=value)


@given(st.from_regex(FOLDER_SCHEMA["pattern"], fullmatch=True).filter(lambda v: len(v) <= 1024))
def test_every_folder_the_schema_allows_is_accepted(value: str) -> None:
    assert accepts(folder=value)


@pytest.mark.parametrize("value", ["a//b", "./a", "a/..", " ./a", "x" * 1025])
def test_folders_the_schema_refuses_are_refused(value: str) -> None:
    rule = FIELDS["folder"]
    assert re.fullmatch(rule["pattern"], value) is None or len(value) > rule["maxLength"]
    assert not accepts(folder=value)


@given(
    st.from_regex(FIELDS["container"]["pattern"], fullmatch=True).filter(lambda v: len(v) <= 255)
)
def test_every_container_the_schema_allows_is_accepted(value: str) -> None:
    assert accepts(container=value)


@pytest.mark.parametrize(
    "field",
    [
        "epochs",
        "learning_rate",
        "image_size",
        "batch_size",
        "step_size",
        "gamma",
        "patience",
        "test_fraction",
        "threshold_precision",
        "export_tolerance",
    ],
)
def test_numeric_bounds_are_the_validators_bounds(field: str) -> None:
    rule = FIELDS[field]
    kind = rule.get("type") or rule["anyOf"][0]["type"]  # optional fields: number or null
    step: float = 1 if kind == "integer" else 1e-9
    number = int if kind == "integer" else float
    assert "minimum" in rule or "exclusiveMinimum" in rule
    if "minimum" in rule:
        assert accepts(**{field: number(rule["minimum"])})
        assert not accepts(**{field: number(rule["minimum"] - step)})
    if "exclusiveMinimum" in rule:
        assert not accepts(**{field: number(rule["exclusiveMinimum"])})
        assert accepts(**{field: number(rule["exclusiveMinimum"] + step)})
    if "maximum" in rule:
        assert accepts(**{field: number(rule["maximum"])})
        assert not accepts(**{field: number(rule["maximum"] + step)})


def test_every_listed_architecture_and_export_is_accepted() -> None:
    architectures = FIELDS["architecture"]["anyOf"][0]["enum"]
    assert "" in architectures  # the seed's clients send "" for the default
    for name in architectures:
        assert accepts(architecture=name) or accepts(
            architecture=name, model_type="detection", export=["onnx"], batch_size=2
        )
    for name in FIELDS["export"]["items"]["enum"]:
        assert accepts(export=[name])
    assert not accepts(export=[])
    assert FIELDS["export"]["minItems"] == 1


def test_an_endpoint_may_name_any_tcp_port() -> None:
    # Ephemeral ports (Azurite's in the tests) run up to 60999; the pattern once stopped at 59999.
    def endpoint(port: int) -> str:
        return (
            f"AccountName=devstoreaccount1;BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )

    pattern = re.compile(CONNECTION_STRING_PATTERN)
    accepted = [port for port in range(0, 70000) if pattern.fullmatch(endpoint(port))]
    assert accepted == list(range(1, 65536))
    assert not pattern.fullmatch(endpoint(65).replace(":65/", ":065/"))  # no leading zero


# Drawing from this regex is slow (0.1 s a value on two busy cores): no health check on speed.
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.from_regex(CONNECTION_STRING_PATTERN, fullmatch=True))
def test_every_connection_string_the_schema_allows_parses(value: str) -> None:
    # Repeated keys are the one rule a regex cannot state (the SDK's choice would be a guess).
    keys = [part.partition("=")[0].strip().lower() for part in value.split(";") if part.strip()]
    assume(len(keys) == len(set(keys)))
    assert connection_string_problem(value, allow_private=True) is None
