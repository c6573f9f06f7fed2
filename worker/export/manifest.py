"""manifest.json and labels.txt: what was exported, how to feed it, and how it was checked."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.limits import ExportPrecision
from worker.classification.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    preprocessing_description,
)

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
SCHEMA_VERSION = 1
# Distributions whose versions decide what an export contains; absent ones are recorded as null.
LIBRARIES = (
    "torch",
    "torchvision",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "coremltools",
    "executorch",
)
# The host-side steps before the model (the eval view training used); pixel scaling and
# normalisation are left out on purpose: they are inside every exported graph.
HOST_STEPS = (
    "color_space",
    "exif_orientation_applied",
    "transparent_background",
    "high_bit_depth",
    "jpeg_reduced_decode",
    "resize_short_side",
    "center_crop",
    "interpolation",
    "apple_vision_crop_and_scale",
)


class Tolerance(BaseModel):
    """What a runnable export must meet against the PyTorch wrapper on the check images."""

    max_abs_diff: float = Field(description="largest allowed |p_export - p_pytorch|")
    top1: str = Field(description="the top-1 rule")


class DetectionTolerance(BaseModel):
    """What a detector's export must meet against the PyTorch detector on the check images."""

    box_abs_px: float = Field(description="largest allowed |coordinate difference| in pixels")
    score_abs: float = Field(description="largest allowed |score difference|")
    match: str = Field(description="how detections are paired and which may stay unpaired")


class Check(BaseModel):
    """The check run on one format's files before upload."""

    method: str = Field(description="how it was checked, e.g. onnxruntime, coreml_spec")
    passed: bool
    summary: str = Field(description="one line for people")
    images: int | None = None
    max_abs_diff: float | None = None
    top1_agreement: float | None = Field(default=None, description="fraction of images")
    tolerance: Tolerance | DetectionTolerance | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ExportedFile(BaseModel):
    """One file beside manifest.json."""

    format: str
    name: str
    role: Literal["model", "state_dict"]
    size_bytes: int
    sha256: str
    check_passed: bool


class FormatResult(BaseModel):
    """One requested format: passed (files delivered) or failed (files removed, reason kept)."""

    format: str
    status: Literal["passed", "failed"]
    files: list[str] = Field(default_factory=list, description="the model file first")
    export_seconds: float | None = None
    check_seconds: float | None = None
    check: Check | None = None
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class InputContract(BaseModel):
    """What every exported model takes: no caller needs to know mean or std."""

    name: str = "image"
    layout: str = "NCHW"
    dtype: str = "float32"
    shape: list[int | str]
    value_range: tuple[float, float] = (0.0, 1.0)
    colour_order: str = "RGB"
    normalisation_inside: bool = True
    mean: list[float] = Field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = Field(default_factory=lambda: list(IMAGENET_STD))
    host_preprocessing: dict[str, Any] = Field(
        default_factory=dict, description="steps the app does before the model"
    )
    core_ml: str = "image input (RGB pixel buffer, image_size²); scale 1/255 inside the model"


class OutputContract(BaseModel):
    """What every exported classifier returns."""

    name: str = "probabilities"
    kind: Literal["probabilities"] = "probabilities"
    softmax_inside: bool = True
    shape: list[int | str]
    order: str = "labels"
    core_ml: str = "classLabel (string) and classLabel_probs (label → probability)"


class DetectionThresholds(BaseModel):
    """The post-processing baked into every exported detector (and applied to its reference)."""

    score_threshold: float = Field(description="a detection is kept when its score is above this")
    nms_iou_threshold: float = Field(
        description="per class, a box overlapping a better one by more IoU than this is dropped"
    )
    max_detections: int = Field(description="at most this many detections per image, best first")


class DetectionOutputContract(BaseModel):
    """What every exported detector returns (Core ML: through Vision, see core_ml)."""

    kind: Literal["detections"] = "detections"
    names: list[str] = Field(default_factory=lambda: ["boxes", "scores", "labels"])
    boxes: str = "float32 K×4: x1, y1, x2, y2 in pixels of the image_size² input"
    scores: str = "float32 K: confidence of each detection, descending"
    labels: str = "int64 K: 0-based index into labels (labels.txt), no background class"
    shape: list[int | str] = Field(description="of boxes; K is the number of detections")
    thresholds_inside: bool = True
    empty: str = "K is 0 when nothing scores above the threshold"
    core_ml: str = ""


class ClassThresholds(BaseModel):
    """classification: the per-class decision thresholds shipped with the model."""

    target_precision: float = Field(description="what each threshold reaches on validation")
    measured_on: Literal["validation"] = "validation"
    rule: str = (
        "take the top label if its probability is at least its class's threshold, else answer "
        "'not sure'; a class whose threshold is null never reached the target precision"
    )
    thresholds: dict[str, float | None] = Field(description="label → probability threshold")


class PrecisionRow(BaseModel):
    """One format × precision, measured on the validation split (up to MAX_SCORED_IMAGES)."""

    key: str = Field(description="the status `exports` key: onnx, onnx_int8, …")
    format: str
    precision: ExportPrecision
    delivered: bool
    file: str | None = None
    size_bytes: int | None = None
    accuracy: float | None = Field(default=None, description="validation accuracy, this file")
    agreement: float | None = Field(
        default=None, description="share of validation images whose top-1 is fp32 PyTorch's"
    )
    max_abs_diff: float | None = Field(
        default=None, description="largest |p - p_pytorch_fp32| over the validation images"
    )
    latency_ms: float | None = Field(
        default=None, description="median per image at batch 1, one CPU thread"
    )
    seconds: float | None = Field(default=None, description="to make and measure it")
    reason: str | None = Field(default=None, description="why it was not delivered")
    simulated: str | None = Field(
        default=None,
        description="what the scores come from when the file cannot run here (Core ML on "
        "Linux): the same change simulated in PyTorch; null when the file itself was scored",
    )


class PrecisionTable(BaseModel):
    """What each precision costs and keeps: the variants' delivery gate and its evidence."""

    images: int = Field(description="validation images every row was scored on")
    pytorch_fp32_accuracy: float | None = Field(
        default=None, description="the trained model's, in PyTorch (None: not scored)"
    )
    tolerance: float = Field(description="a variant more than this below fp32 is not delivered")
    runtime: str | None = Field(default=None, description="what ran the files")
    cpu: dict[str, Any] = Field(
        default_factory=dict, description="the CPU latencies were measured on"
    )
    rows: list[PrecisionRow]


class Manifest(BaseModel):
    """manifest.json: labels, contract, metrics, and per-format files with their checks."""

    schema_version: int = SCHEMA_VERSION
    task: Literal["classification", "detection"] = "classification"
    model_version: str
    created_at: datetime
    architecture: str
    image_size: int
    labels: list[str]
    num_classes: int
    input: InputContract
    output: OutputContract | DetectionOutputContract = Field(discriminator="kind")
    thresholds: DetectionThresholds | None = Field(
        default=None, description="detection only: the post-processing inside every file"
    )
    class_thresholds: ClassThresholds | None = Field(
        default=None, description="classification only: when to answer 'not sure'"
    )
    metrics: dict[str, Any]
    requested_formats: list[str]
    formats: dict[str, FormatResult]
    files: list[ExportedFile]
    failed: dict[str, str] = Field(default_factory=dict, description="format → why")
    libraries: dict[str, str | None]
    precisions: PrecisionTable | None = Field(
        default=None, description="when export_precision asked for variants beside fp32"
    )

    @property
    def succeeded(self) -> bool:
        """Every requested format exported and passed its check."""
        return not self.failed

    def upload_names(self) -> list[str]:
        """Every file in the export folder that may be delivered, manifest and labels included."""
        return [entry.name for entry in self.files] + [LABELS_FILE, MANIFEST_FILE]

    def model_file(self, format: str) -> str | None:
        """The main file of a format that passed (the one a status URL points at), else None."""
        result = self.formats.get(format)
        if result is None or result.status != "passed" or not result.files:
            return None
        return result.files[0]

    def variant_files(self) -> dict[str, str]:
        """status `exports` key → file, for every delivered precision variant."""
        if self.precisions is None:
            return {}
        return {
            row.key: row.file
            for row in self.precisions.rows
            if row.delivered and row.precision != "fp32" and row.file
        }

    def variants_not_delivered(self) -> dict[str, str]:
        """key → why, for every requested variant that is not delivered."""
        if self.precisions is None:
            return {}
        return {row.key: row.reason or "" for row in self.precisions.rows if not row.delivered}

    def write(self, out_dir: Path) -> Path:
        """Write manifest.json and labels.txt into out_dir; returns the manifest's path."""
        (out_dir / LABELS_FILE).write_text("".join(f"{label}\n" for label in self.labels))
        path = out_dir / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Load a manifest.json written by write()."""
        return cls.model_validate_json(path.read_text())


def input_contract(image_size: int, batch: int | str = "batch") -> InputContract:
    """The shared input contract at image_size."""
    steps = preprocessing_description(image_size)
    return InputContract(
        shape=[batch, 3, image_size, image_size],
        host_preprocessing={key: steps[key] for key in HOST_STEPS if key in steps},
    )


# The host-side steps before a detector (the view detection training used); scaling and
# normalisation are inside every exported graph.
DETECTION_HOST_STEPS = (
    "color_space",
    "exif_orientation_applied",
    "transparent_background",
    "high_bit_depth",
    "jpeg_reduced_decode",
    "resize",
    "keep_aspect_ratio",
    "interpolation",
    "boxes",
    "apple_vision_crop_and_scale",
)


def detection_input_contract(
    image_size: int, mean: list[float], std: list[float], steps: dict[str, Any]
) -> InputContract:
    """The input contract of an exported detector: one image, as detection training saw it.

    steps is the training code's preprocessing_description (images stretched to image_size²).
    """
    host = {key: steps[key] for key in DETECTION_HOST_STEPS if key in steps}
    host["boxes_to_original_image"] = f"x * width / {image_size}, y * height / {image_size}"
    return InputContract(
        shape=[1, 3, image_size, image_size],
        mean=list(mean),
        std=list(std),
        host_preprocessing=host,
        core_ml=(
            f"image input (RGB pixel buffer, {image_size}²); scale 1/255 and normalisation "
            "inside the model; with Vision use imageCropAndScaleOption = .scaleFill"
        ),
    )


def output_contract(num_classes: int) -> OutputContract:
    """The shared output contract for num_classes labels."""
    return OutputContract(shape=["batch", num_classes])


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries an export depends on (None where absent)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def utcnow() -> datetime:
    """Timezone-aware now, for created_at."""
    return datetime.now(UTC)
