"""The public contract: the start request, the queue message, the table row and the responses.

The seed specification fixes the field names, defaults and limits; every rule lives here so
that the API, the worker and the docs read one source. Error texts name the field and the
rule, because they reach users verbatim.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.addresses import RESOLVE_SECONDS, public_host_problem
from shared.connection_strings import connection_string_problem

# The values the models below are built on, plain Python for the engine: re-exported.
from shared.limits import *  # noqa: F403

# How long a webhook (or storage account) host name may take to resolve.
WEBHOOK_RESOLVE_SECONDS = RESOLVE_SECONDS

# profile_id and project_name become table keys, blob paths and folder names: this set is
# safe in all three (Table Storage forbids / \ # ? and control characters in keys).
IDENTIFIER_PATTERN = re.compile(r"[A-Za-z0-9 _.@-]{1,256}")
IDENTIFIER_RULE = (
    "1 to 256 letters, digits, spaces or - _ . @, not starting or ending with a space or a dot"
)
# The same rule in JSON Schema, so generated clients and fuzzers send what we accept.
IDENTIFIER_SCHEMA: dict[str, Any] = {
    "pattern": r"^[A-Za-z0-9_@-](?:[A-Za-z0-9 _.@-]{0,254}[A-Za-z0-9_@-])?$",
    "minLength": 1,
    "maxLength": 256,
}


# A connection string's shape: `key=value` parts, one naming the account or the endpoint
# (keys are case-insensitive; JSON Schema's regexes have no flag for that). Values keep to
# the characters account keys and suffixes use, so whatever the pattern allows parses.
def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


# A port is 1-65535: the ranges below spell that out digit by digit (a pattern cannot compare).
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_ENDPOINT = (
    r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+"
    rf"(?::{_PORT})?(?:/[A-Za-z0-9._~/-]*)?"
)
_OTHER_ENDPOINTS = "|".join(_any_case(f"{name}Endpoint") for name in ("Queue", "Table", "File"))
_PART = (
    rf"(?:\s*[A-Za-z][A-Za-z0-9]*\s*=[A-Za-z0-9+/=._-]*"
    rf"|\s*(?:{_OTHER_ENDPOINTS})\s*=\s*{_ENDPOINT}\s*)"
)
_ACCOUNT = (
    rf"\s*(?:{_any_case('AccountName')}\s*=\s*[A-Za-z0-9]+"
    rf"|{_any_case('BlobEndpoint')}\s*=\s*{_ENDPOINT})\s*"
)
CONNECTION_STRING_PATTERN = rf"^(?:{_PART};)*{_ACCOUNT}(?:;{_PART})*;?$"
# A folder: `/`-separated segments, none empty, `.` or `..` (the empty folder: the root).
FOLDER_SCHEMA: dict[str, Any] = {
    "pattern": r"^(?!\s)(?:(?!\.\.?(?:/|$))[^/]+(?:/(?!\.\.?(?:/|$))[^/]+)*)?(?<!\s)$",
    "maxLength": 1024,
}


class State(StrEnum):
    """A training's lifecycle; the seed's states plus CANCELLED."""

    PENDING = "PENDING"
    DOWNLOADING = "DOWNLOADING"
    DOWNLOADED = "DOWNLOADED"
    RUNNING = "RUNNING"
    EXPORTING = "EXPORTING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES

    def can_move_to(self, new: State) -> bool:
        """States only move forward; a finished training never changes state again."""
        if self.finished:
            return False
        return new.finished or _STATE_ORDER.index(new) >= _STATE_ORDER.index(self)


_STATE_ORDER = list(State)
FINISHED_STATES = frozenset({State.SUCCESS, State.FAILED, State.CANCELLED})


def identifier_problem(value: str) -> str | None:
    """Why `value` is not a valid profile_id/project_name, or None when it is."""
    if not IDENTIFIER_PATTERN.fullmatch(value) or value[0] in " ." or value[-1] in " .":
        return IDENTIFIER_RULE
    return None


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _check_range(
    field: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    too_low = value <= low if low_open else value < low
    # NaN compares false with everything: without this it passes every bound (JSON parsers
    # such as Python's accept a bare NaN).
    if math.isnan(value) or too_low or value > high:
        lower = f"greater than {low:g}" if low_open else f"at least {low:g}"
        if not low_open and isinstance(value, int):
            rule = f"between {low:g} and {high:g}"
        else:
            rule = f"{lower} and at most {high:g}"
        raise _fail("range", f"{field} must be {rule} (got {value:g})")


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and value.strip() == "") else value


def webhook_url_problem(
    url: str, *, allow_private: bool, resolve_seconds: float = WEBHOOK_RESOLVE_SECONDS
) -> str | None:
    """Why `url` may not receive webhooks, or None when it may.

    Outside dev the target must be https and resolve only to public addresses, so a client
    cannot point our worker at internal services (metadata endpoints, private networks).
    A host name that does not resolve within `resolve_seconds` is refused too: this runs
    while a request waits.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook_url must be an absolute http(s) URL"
    if parts.username or parts.password:
        return "webhook_url must not contain a user name or password"
    if allow_private:
        return None
    if parts.scheme != "https":
        return "webhook_url must use https"
    return public_host_problem("webhook_url", parts.hostname, parts.port or 443, resolve_seconds)


def dataset_uri(storage_type: str, container: str, folder: str) -> str:
    """`azure://<container>/<folder>` or `s3://<bucket>/<folder>`."""
    scheme = "azure" if storage_type == "azure" else "s3"
    return f"{scheme}://{container}/{folder}"


_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "azure": ("azure_connection_string",),
    "aws": ("aws_access_key_id", "aws_secret_access_key"),
}


def _required_for(storage_type: str) -> dict[str, Any]:
    """JSON Schema: this storage type's credentials are present and not blank."""
    names = _CREDENTIALS[storage_type]
    return {
        "if": {"properties": {"storage_type": {"const": storage_type}}},
        "then": {
            "required": list(names),
            "properties": {name: {"type": "string", "pattern": r"\S"} for name in names},
        },
    }


class StartTrainingRequest(BaseModel):
    """POST /starttraining/ body: the seed's fields plus architecture and AWS extras.

    Validation context: ``max_batch_size`` (int), ``allow_private_webhooks`` (bool) and
    ``webhook_resolve_seconds`` (float).
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        hide_input_in_errors=True,
        json_schema_extra={"allOf": [_required_for("azure"), _required_for("aws")]},
    )

    profile_id: str = Field(json_schema_extra=IDENTIFIER_SCHEMA)
    project_name: str = Field(json_schema_extra=IDENTIFIER_SCHEMA)
    webhook_url: str | None = Field(
        default=None,
        description="absolute http(s) URL without user or password; outside dev https, "
        "its host resolving (within seconds) to public addresses only",
        json_schema_extra={"pattern": r"^(?:$|[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+)"},
    )
    epochs: int = Field(
        default=DEFAULT_EPOCHS, json_schema_extra={"minimum": MIN_EPOCHS, "maximum": MAX_EPOCHS}
    )
    learning_rate: float = Field(
        default=DEFAULT_LEARNING_RATE,
        json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_LEARNING_RATE},
    )
    image_size: int = Field(
        default=DEFAULT_IMAGE_SIZE,
        json_schema_extra={"minimum": MIN_IMAGE_SIZE, "maximum": MAX_IMAGE_SIZE},
    )
    # The maximum is a deployment setting: the API's schema states the one it runs with.
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        description=f"at least {MIN_DETECTION_BATCH_SIZE} for detection",
        json_schema_extra={"minimum": MIN_BATCH_SIZE, "maximum": DEFAULT_MAX_BATCH_SIZE},
    )
    step_size: int = Field(default=DEFAULT_STEP_SIZE, json_schema_extra={"minimum": MIN_STEP_SIZE})
    gamma: float = Field(
        default=DEFAULT_GAMMA, json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_GAMMA}
    )
    export: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXPORT),
        description="for detection: " + ", ".join(DETECTION_EXPORT_FORMATS),
        json_schema_extra={"items": {"enum": list(EXPORT_FORMATS)}, "minItems": 1},
    )
    export_precision: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXPORT_PRECISION),
        description="fp32 (always: the plain format files) and the variants wanted, each its "
        "own file checked on the validation split (up to 5,000 images); classification only; "
        "made for: " + "; ".join(f"{p} {', '.join(f)}" for p, f in VARIANT_FORMATS.items()),
        json_schema_extra={"items": {"enum": list(EXPORT_PRECISIONS)}, "minItems": 1},
    )
    export_tolerance: float = Field(
        default=DEFAULT_EXPORT_TOLERANCE,
        description="a precision variant whose validation accuracy is more than this below "
        "fp32's is not delivered (the status says why)",
        json_schema_extra={"minimum": 0, "maximum": 1},
    )
    model_type: Literal["classification", "detection"]
    architecture: str | None = Field(
        default=None,
        description="classification: "
        + ", ".join(CLASSIFICATION_ARCHITECTURES)
        + "; detection: "
        + ", ".join(DETECTION_ARCHITECTURES)
        + "; empty or absent: the first",
        json_schema_extra={
            "anyOf": [
                {"enum": ["", *CLASSIFICATION_ARCHITECTURES, *DETECTION_ARCHITECTURES]},
                {"type": "null"},
            ]
        },
    )
    augmentation: Augmentation = DEFAULT_AUGMENTATION
    horizontal_flip: bool = True
    patience: int | None = Field(
        default=None,
        description="stop after this many epochs without a better validation score "
        "(the model delivered is the best epoch's); absent: train every epoch",
        json_schema_extra={"minimum": 1, "maximum": MAX_EPOCHS},
    )
    class_weighting: ClassWeighting = Field(
        default=DEFAULT_CLASS_WEIGHTING,
        description="classification: weight each class's loss by total / (classes × its "
        f"images); auto: when the largest class has ≥ {AUTO_BALANCE_RATIO:g}× the smallest's",
    )
    test_fraction: float | None = Field(
        default=None,
        description="classification: hold out this share of each class (stratified, seeded) "
        "as a test split scored once with the best model (test_accuracy); a dataset's own "
        "test/ folder is used without it",
        json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_TEST_FRACTION},
    )
    threshold_precision: float = Field(
        default=DEFAULT_THRESHOLD_PRECISION,
        description="classification: the precision each class's shipped decision threshold "
        "reaches on validation images",
        json_schema_extra={"exclusiveMinimum": 0, "maximum": 1},
    )
    leakage: Leakage = Field(
        default=DEFAULT_LEAKAGE,
        description="a picture the dataset check finds in more than one of train/val/test "
        "(exact or near duplicate): drop keeps a classifier's seeded split's duplicates on "
        "one side and drops the later copies from given folders (a detector's val copies, "
        "its split being drawn before any pixel is read); keep only reports it",
    )
    storage_type: Literal["aws", "azure"]
    container: str = Field(
        json_schema_extra={"pattern": r"^[^/]*[^/\s][^/]*$", "maxLength": 255},
    )
    folder: str = Field(json_schema_extra=FOLDER_SCHEMA)
    zipped: bool
    azure_connection_string: SecretStr | None = Field(
        default=None,
        description="required when storage_type is azure: key=value parts, each key once, "
        "naming AccountName or BlobEndpoint; outside dev an https endpoint on an Azure "
        "Storage suffix whose host resolves to public addresses only",
        json_schema_extra={"pattern": CONNECTION_STRING_PATTERN},
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="required when storage_type is aws"
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="required when storage_type is aws"
    )
    aws_session_token: SecretStr | None = None
    aws_region: str | None = None

    @field_validator(
        "webhook_url",
        "architecture",
        "azure_connection_string",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region",
        mode="before",
    )
    @classmethod
    def _empty_means_absent(cls, value: Any) -> Any:
        # Seed clients send "" or null for the fields they leave out.
        return _blank_to_none(value)

    @field_validator("profile_id", "project_name")
    @classmethod
    def _identifier(cls, value: str, info: ValidationInfo) -> str:
        if identifier_problem(value):
            raise _fail("identifier", f"{info.field_name} must be {IDENTIFIER_RULE}")
        return value

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, value: int) -> int:
        _check_range("epochs", value, MIN_EPOCHS, MAX_EPOCHS)
        return value

    @field_validator("learning_rate")
    @classmethod
    def _learning_rate(cls, value: float) -> float:
        _check_range("learning_rate", value, 0, MAX_LEARNING_RATE, low_open=True)
        return value

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, value: int) -> int:
        _check_range("image_size", value, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int, info: ValidationInfo) -> int:
        context = info.context or {}
        high = context.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
        _check_range("batch_size", value, MIN_BATCH_SIZE, high)
        return value

    @field_validator("step_size")
    @classmethod
    def _step_size(cls, value: int) -> int:
        if value < MIN_STEP_SIZE:
            raise _fail("range", f"step_size must be at least {MIN_STEP_SIZE} (got {value})")
        return value

    @field_validator("gamma")
    @classmethod
    def _gamma(cls, value: float) -> float:
        _check_range("gamma", value, 0, MAX_GAMMA, low_open=True)
        return value

    @field_validator("patience")
    @classmethod
    def _patience(cls, value: int | None) -> int | None:
        if value is not None:
            _check_range("patience", value, 1, MAX_EPOCHS)
        return value

    @field_validator("test_fraction")
    @classmethod
    def _test_fraction(cls, value: float | None) -> float | None:
        if value is not None:
            _check_range("test_fraction", value, 0, MAX_TEST_FRACTION, low_open=True)
        return value

    @field_validator("threshold_precision")
    @classmethod
    def _threshold_precision(cls, value: float) -> float:
        _check_range("threshold_precision", value, 0, 1, low_open=True)
        return value

    @field_validator("export")
    @classmethod
    def _export(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in EXPORT_FORMATS]
        if unknown:
            raise _fail(
                "export",
                f"export has unknown format '{unknown[0]}' (allowed: {', '.join(EXPORT_FORMATS)})",
            )
        if not value:
            raise _fail("export", "export must name at least one format")
        return list(dict.fromkeys(value))  # drop duplicates, keep the caller's order

    @field_validator("export_precision")
    @classmethod
    def _export_precision(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in EXPORT_PRECISIONS]
        if unknown:
            raise _fail(
                "export_precision",
                f"export_precision has unknown precision '{unknown[0]}' "
                f"(allowed: {', '.join(EXPORT_PRECISIONS)})",
            )
        if "fp32" not in value:
            raise _fail(
                "export_precision",
                "export_precision must include fp32: the plain formats, which every variant "
                "is measured against and which are always delivered",
            )
        return [name for name in EXPORT_PRECISIONS if name in value]  # one each, fixed order

    @field_validator("export_tolerance")
    @classmethod
    def _export_tolerance(cls, value: float) -> float:
        _check_range("export_tolerance", value, 0, 1)
        return value

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        value = value.strip()
        if not value or "/" in value or len(value) > 255:
            raise _fail(
                "container",
                "container must be a container or bucket name without '/' (1 to 255 characters)",
            )
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        value = value.strip().strip("/")
        if any(part in ("", ".", "..") for part in value.split("/")) and value:
            raise _fail("folder", "folder must not contain empty, '.' or '..' path segments")
        if len(value) > 1024:
            raise _fail("folder", "folder must be at most 1024 characters")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        context = info.context or {}
        problem = webhook_url_problem(
            value,
            allow_private=context.get("allow_private_webhooks", False),
            resolve_seconds=context.get("webhook_resolve_seconds", WEBHOOK_RESOLVE_SECONDS),
        )
        if problem:
            raise _fail("webhook_url", problem)
        return value

    @field_validator("azure_connection_string")
    @classmethod
    def _dataset_endpoint(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # The API passes its rules in the context; the worker checks again before it connects.
        rules = (info.context or {}).get("dataset_rules")
        if value is None or rules is None or info.data.get("storage_type") != "azure":
            return value
        problem = connection_string_problem(value.get_secret_value(), **rules)
        if problem:
            raise _fail("azure_connection_string", problem)
        return value

    @model_validator(mode="after")
    def _storage_and_model(self) -> StartTrainingRequest:
        if self.storage_type == "azure":
            if self.azure_connection_string is None:
                raise _fail(
                    "credentials",
                    "azure_connection_string is required when storage_type is 'azure'",
                )
            # Credentials of the other storage are never needed: drop them, never store them.
            self.aws_access_key_id = self.aws_secret_access_key = self.aws_session_token = None
            self.aws_region = None
        else:
            for name in _CREDENTIALS["aws"]:
                if getattr(self, name) is None:
                    raise _fail("credentials", f"{name} is required when storage_type is 'aws'")
            self.azure_connection_string = None
        architectures = (
            DETECTION_ARCHITECTURES
            if self.model_type == "detection"
            else CLASSIFICATION_ARCHITECTURES
        )
        if self.architecture is None:
            self.architecture = architectures[0]
        elif self.architecture not in architectures:
            raise _fail(
                "architecture",
                f"architecture '{self.architecture}' is not available for {self.model_type} "
                f"(allowed: {', '.join(architectures)})",
            )
        variants = [name for name in self.export_precision if name != "fp32"]
        if variants and self.model_type == "detection":
            raise _fail(
                "export_precision",
                f"export_precision '{variants[0]}' is for classification only "
                "(detection exports are float32)",
            )
        for precision in variants:
            makers = VARIANT_FORMATS[precision]
            if not set(self.export) & set(makers):
                named = (
                    makers[0] if len(makers) == 1 else f"{', '.join(makers[:-1])} or {makers[-1]}"
                )
                raise _fail(
                    "export_precision",
                    f"export_precision '{precision}' is made for export format"
                    f"{'s' if len(makers) > 1 else ''} {named}, and export names none of them "
                    f"(got {', '.join(self.export)})",
                )
        if self.model_type == "detection":
            if self.class_weighting == "balanced":
                raise _fail(
                    "class_weighting", "class_weighting 'balanced' is for classification only"
                )
            if self.test_fraction is not None:
                raise _fail("test_fraction", "test_fraction is for classification only")
            # SSDlite's head normalises 1×1 feature maps: batch norm needs two images.
            if self.batch_size < MIN_DETECTION_BATCH_SIZE:
                raise _fail(
                    "batch_size",
                    f"batch_size must be at least {MIN_DETECTION_BATCH_SIZE} for detection "
                    f"(got {self.batch_size})",
                )
            # Refused here, not after an hour of GPU time, when the export would fail.
            refused = [name for name in self.export if name not in DETECTION_EXPORT_FORMATS]
            if refused:
                raise _fail(
                    "export",
                    f"export format '{refused[0]}' cannot carry a detector "
                    f"(allowed for detection: {', '.join(DETECTION_EXPORT_FORMATS)})",
                )
            if "coreml" in self.export and self.architecture not in COREML_DETECTION_ARCHITECTURES:
                if "export" in self.model_fields_set:
                    raise _fail(
                        "export",
                        f"export format 'coreml' needs architecture "
                        f"{' or '.join(COREML_DETECTION_ARCHITECTURES)} for detection "
                        f"(got {self.architecture}); use onnx or torch",
                    )
                # The seed's default [onnx, coreml] must not make a default request fail.
                self.export = [name for name in self.export if name != "coreml"]
        return self

    @property
    def dataset(self) -> str:
        """Where the dataset lives, as the seed's `dataset` response field shows it."""
        return dataset_uri(self.storage_type, self.container, self.folder)

    def credentials(self) -> dict[str, str]:
        """The secrets this request carries, for sealing into the queue message."""
        names = (
            "azure_connection_string",
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
        )
        return {
            name: secret.get_secret_value()
            for name in names
            if (secret := getattr(self, name)) is not None
        }


_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "literal_error": None,
}


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the field and the rule."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        kind = item["type"]
        if kind == "missing":
            lines.append(f"{field} is required")
        elif kind == "extra_forbidden":
            lines.append(f"unknown field '{field}'")
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            lines.append(f"{field} must be one of {expected}")
        elif kind in _TYPE_WORDS:
            lines.append(f"{field} must be {_TYPE_WORDS[kind]}")
        elif kind in ("model_type", "dict_type"):
            lines.append("body must be a JSON object")
        else:
            lines.append(item["msg"])  # our own texts already name the field
    return "; ".join(dict.fromkeys(lines))


class TrainingParams(BaseModel):
    """The hyperparameters a training runs with, as stored in its row (no secrets)."""

    epochs: int
    learning_rate: float
    image_size: int
    batch_size: int
    step_size: int
    gamma: float
    export: list[str]
    model_type: Literal["classification", "detection"]
    architecture: str | None
    # Rows written before these fields existed read as the defaults.
    augmentation: Augmentation = DEFAULT_AUGMENTATION
    horizontal_flip: bool = True
    patience: int | None = None
    class_weighting: ClassWeighting = DEFAULT_CLASS_WEIGHTING
    test_fraction: float | None = None
    threshold_precision: float = DEFAULT_THRESHOLD_PRECISION
    leakage: Leakage = DEFAULT_LEAKAGE
    export_precision: list[str] = Field(default_factory=lambda: list(DEFAULT_EXPORT_PRECISION))
    export_tolerance: float = DEFAULT_EXPORT_TOLERANCE


class DatasetLocation(BaseModel):
    """Where the worker downloads the dataset from (credentials travel sealed, not here)."""

    storage_type: Literal["aws", "azure"]
    container: str
    folder: str
    zipped: bool
    aws_region: str | None = None

    @property
    def uri(self) -> str:
        return dataset_uri(self.storage_type, self.container, self.folder)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Row columns that hold a nested model or mapping, stored as JSON text.
_JSON_COLUMNS = frozenset({"params", "dataset", "exports", "files"})


class TrainingRow(BaseModel):
    """One training, as the `trainings` table holds it: state, parameters, progress."""

    profile_id: str
    project_name: str
    # New for every start: a message of an earlier training under this name (deleted and
    # started again) names another job id and neither opens nor runs here. None: rows from
    # before job ids.
    job_id: str | None = None
    # The fingerprint of the API token that started it (function_app/auth.py): the per-token
    # cap on active trainings counts these. None: rows from before the cap.
    started_by: str | None = None
    state: State = State.PENDING
    params: TrainingParams
    dataset: DatasetLocation
    webhook_url: str | None = None
    message: str = "queued"
    current_epoch: int = 0
    loss: float | None = None
    accuracy: float | None = None
    test_accuracy: float | None = None
    last_epoch_duration_seconds: float | None = None
    created: datetime = Field(default_factory=utcnow)
    lastupdate: datetime = Field(default_factory=utcnow)
    attempt: int = Field(default=0, description="failed attempts so far")
    worker_id: str | None = Field(default=None, description="the worker holding the job")
    # The holder's claim: every row write and upload of a holder checks it is still theirs.
    claim_token: str | None = Field(default=None, description="the holder's claim, per claim")
    message_id: str | None = Field(default=None, description="the queue message it runs under")
    claimed_epoch: int = Field(default=0, description="current_epoch when last claimed")
    checkpoints: int = Field(default=0, description="resume checkpoints saved, inside epochs too")
    claimed_checkpoints: int = Field(default=0, description="checkpoints when last claimed")
    checkpoint_blob: str | None = Field(default=None, description="the checkpoint to resume from")
    # An end reached without a worker (cancelled while queued): the worker that drops its
    # message sends the webhook a running job would have sent.
    event_pending: bool = False
    cancel_requested: bool = False
    # DELETE marks the row before it removes any file; a marked row names no files and a
    # repeated DELETE finishes what an interrupted one began.
    deleting: bool = False
    events: int = Field(default=0, description="webhook events so far: the next sequence - 1")
    last_error: str | None = None
    # The batch size the GPU ran out of memory at: the job then restarted once at half of
    # it (params.batch_size), and a second out-of-memory error fails it.
    out_of_memory_batch_size: int | None = None
    exports: dict[str, str] = Field(
        default_factory=dict, description="format (or variant: onnx_int8, …) → blob name"
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="manifest, labels, metrics, plots → blob name"
    )

    @classmethod
    def from_request(
        cls, request: StartTrainingRequest, webhook_url: str | None, job_id: str
    ) -> TrainingRow:
        return cls(
            profile_id=request.profile_id,
            project_name=request.project_name,
            job_id=job_id,
            params=TrainingParams.model_validate(request.model_dump(), strict=False),
            dataset=DatasetLocation.model_validate(request.model_dump(), strict=False),
            webhook_url=webhook_url,
        )

    def to_entity(self) -> dict[str, Any]:
        """Flatten to Table Storage properties; nested parts are JSON, None is omitted."""
        entity: dict[str, Any] = {"PartitionKey": self.profile_id, "RowKey": self.project_name}
        for name, value in self.model_dump(exclude={"profile_id", "project_name"}).items():
            if value is None:
                continue
            if isinstance(value, dict | list):
                entity[name] = json.dumps(value)
            elif isinstance(value, StrEnum):
                entity[name] = value.value
            else:
                entity[name] = value
        return entity

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> TrainingRow:
        data: dict[str, Any] = {
            "profile_id": entity["PartitionKey"],
            "project_name": entity["RowKey"],
        }
        for name in cls.model_fields:
            if name in entity and name not in data:
                value = entity[name]
                data[name] = json.loads(value) if name in _JSON_COLUMNS else value
        return cls.model_validate(data)


class JobMessage(BaseModel):
    """The queue message: which row to work on, and the dataset credentials sealed."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    profile_id: str
    project_name: str
    job_id: str | None = Field(default=None, description="the row's job id (None: queued before)")
    sealed_credentials: str


class StartTrainingResponse(BaseModel):
    """The seed's answer to /starttraining/ (HTTP 202 when PENDING)."""

    status: Literal["PENDING", "FAILED"]
    profile_id: str | None = None
    project_name: str | None = None
    dataset: str | None = None
    message: str


class StatusResponse(BaseModel):
    """The seed's /statustraining/ fields plus message and what we know beyond the seed."""

    result: State
    current_epoch: int
    epochs: int
    loss: float | None
    accuracy: float | None = Field(description="Validation accuracy as a fraction in [0, 1].")
    test_accuracy: float | None = Field(
        default=None,
        description="The delivered model's accuracy on the held-out test split (a test/ "
        "folder or test_fraction), scored once; null without one.",
    )
    lastupdate: datetime = Field(description="ISO 8601, UTC.")
    last_epoch_duration_seconds: float | None
    message: str
    profile_id: str
    project_name: str
    created: datetime
    parameters: TrainingParams
    exports: dict[str, str] = Field(
        default_factory=dict,
        description="format (or precision variant: onnx_fp16, onnx_int8, coreml_fp16, "
        "coreml_int8, executorch_int8) → download URL (expires; ask again for fresh)",
    )
    manifest: str | None = Field(default=None, description="download URL of manifest.json")
    dataset_report: str | None = Field(
        default=None,
        description="download URL of dataset_report.json: what the dataset check found, "
        "from the DOWNLOADED step on",
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="labels, metrics, plots, checkpoint → download URL"
    )

    @classmethod
    def from_row(cls, row: TrainingRow, url: Callable[[str], str] | None = None) -> StatusResponse:
        """The public view of a row; `url` turns blob names into download URLs."""
        links = url or (lambda blob: blob)
        files = {name: links(blob) for name, blob in row.files.items()}
        return cls(
            result=row.state,
            current_epoch=row.current_epoch,
            epochs=row.params.epochs,
            loss=row.loss,
            accuracy=row.accuracy,
            test_accuracy=row.test_accuracy,
            lastupdate=row.lastupdate,
            last_epoch_duration_seconds=row.last_epoch_duration_seconds,
            message=row.message,
            profile_id=row.profile_id,
            project_name=row.project_name,
            created=row.created,
            parameters=row.params,
            exports={name: links(blob) for name, blob in row.exports.items()},
            manifest=files.pop("manifest", None),
            dataset_report=files.pop(DATASET_REPORT_KEY, None),
            files=files,
        )


class TrainingSummary(BaseModel):
    """One line of GET /trainings/{profile_id}."""

    project_name: str
    result: State
    created: datetime
    lastupdate: datetime
    current_epoch: int = 0
    epochs: int | None = None
    accuracy: float | None = Field(
        default=None, description="Validation accuracy as a fraction in [0, 1]."
    )


class TrainingList(BaseModel):
    profile_id: str
    trainings: list[TrainingSummary]


class CheckServerResponse(BaseModel):
    """The seed's /checkserver/ answer."""

    result: Literal["Ok", "Failed"]
    message: str


class DeleteTrainingResponse(BaseModel):
    """DELETE /trainings/{profile_id}/{project_name}: what was removed."""

    message: str


class ProfileList(BaseModel):
    """GET /profiles: the profiles a token may see."""

    profiles: list[str] = Field(
        description="a limited token's own profiles; for an unlimited token every profile "
        "that has trainings, sorted"
    )


class WebhookSecretResponse(BaseModel):
    """GET /profiles/{profile_id}/webhook-secret: the key of this profile's webhook signatures."""

    profile_id: str
    webhook_secret: str = Field(description="the HMAC-SHA256 key, as these characters' UTF-8")
    signature_header: str = "X-AITrainer-Signature"
    scheme: str = 't=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">'


class ErrorResponse(BaseModel):
    """Any refusal outside /starttraining/ (which answers in the seed's own shape)."""

    message: str
