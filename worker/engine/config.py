"""TrainConfig: the parameters of one run, validated when made, and the defaults they start from."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from shared.limits import (
    AUGMENTATIONS,
    CLASS_WEIGHTINGS,
    CLASSIFICATION_ARCHITECTURES,
    DEFAULT_AUGMENTATION,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLASS_WEIGHTING,
    DEFAULT_EPOCHS,
    DEFAULT_GAMMA,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_LEAKAGE,
    DEFAULT_LEARNING_RATE,
    DEFAULT_STEP_SIZE,
    DEFAULT_THRESHOLD_PRECISION,
    DETECTION_ARCHITECTURES,
    LEAKAGES,
    MAX_TEST_FRACTION,
    MIN_IMAGE_SIZE,
    Augmentation,
    ClassWeighting,
    Leakage,
)

# The seed's defaults and the smallest image size (every model here downsamples by 32)
# live in shared/limits.py (the contract's values), so the API, the engine and the docs
# cannot disagree.

TaskName = Literal["classification", "detection"]
# The worker's AITRAINER_PRECISION (worker/engine/device.py applies it; this module stays
# torch-free for the CLI's dataset check).
PrecisionRequest = Literal["auto", "bf16", "fp16", "fp32"]
PRECISION_REQUESTS: tuple[str, ...] = get_args(PrecisionRequest)
ARCHITECTURES: dict[TaskName, tuple[str, ...]] = {
    "classification": CLASSIFICATION_ARCHITECTURES,
    "detection": DETECTION_ARCHITECTURES,
}
# Who decodes a classifier's plain JPEGs into the cache (worker/classification/
# device_decode.py): "auto" torchvision on a CUDA device, Pillow elsewhere; "torchvision" on
# whatever device the run trains on (the CPU's libjpeg-turbo too: tests and benches); "pillow"
# always (shared/images.py). Every other file is Pillow's whichever is chosen.
JpegDecoder = Literal["auto", "torchvision", "pillow"]
JPEG_DECODERS: tuple[str, ...] = get_args(JpegDecoder)
# "fail": a missing ImageNet weights file fails the run; "scratch": train without it.
PretrainedPolicy = Literal["fail", "scratch"]
PRETRAINED_POLICIES: tuple[PretrainedPolicy, ...] = ("fail", "scratch")

DEFAULT_SEED = 0
DEFAULT_VAL_FRACTION = 0.2
# RAM for decoded images (the worker's AITRAINER_CACHE_BYTES default); beyond it, stream.
DEFAULT_CACHE_BYTES = 8 * 2**30
MAX_AUTO_WORKERS = 16

# Request fields older checkpoints may not have (format 1 lacks the recipe, format 3 before
# early stopping the rest): such a run resumes with the resuming config's values from its
# next epoch on. The engine's own recipe (ema, warmup, precise_batch_norm, label_smoothing) is
# not compared at all: a deploy that changes it must not fail the jobs in flight, which
# continue with the new engine's recipe. threshold_precision changes no training: not compared.
RECIPE_FIELDS = (
    "augmentation",
    "horizontal_flip",
    "patience",
    "class_weighting",
    "test_fraction",
    "leakage",
)
# The options that decide a run's result; a resume must not change them. The rest (where
# weights, memory and workers come from) may differ between the machines of one run.
RESULT_DEFINING_FIELDS = (
    "task",
    "epochs",
    "learning_rate",
    "image_size",
    "batch_size",
    "step_size",
    "gamma",
    "architecture",
    "seed",
    "val_fraction",
    *RECIPE_FIELDS,
)
# How the engine behaved before these fields existed: a checkpoint without one resumes so,
# whatever the request says (a test split or class weights switched on mid-run would change
# the data, the loss and the shuffle order the checkpoint's epoch was drawn over).
# Before the dataset check, duplicates were split like any image and nothing was dropped.
LEGACY_VALUES: dict[str, Any] = {
    "class_weighting": "none",
    "test_fraction": None,
    "leakage": "keep",
}


@dataclass(frozen=True)
class TrainConfig:
    """The parameters of one run; invalid values fail here, naming the option."""

    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    image_size: int = DEFAULT_IMAGE_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    step_size: int = DEFAULT_STEP_SIZE
    gamma: float = DEFAULT_GAMMA
    architecture: str = CLASSIFICATION_ARCHITECTURES[0]
    pretrained: PretrainedPolicy = "fail"
    weights_dir: Path | None = None
    seed: int = DEFAULT_SEED
    device: str | None = None  # None: CUDA when available, else CPU
    # auto: bf16 where the GPU has it, else fp16; float32 on the CPU (worker/engine/device.py)
    precision: PrecisionRequest = "auto"
    cache_bytes: int = DEFAULT_CACHE_BYTES
    jpeg_decoder: JpegDecoder = "auto"
    num_workers: int | None = None  # decode threads and loader workers; None: one per core
    val_fraction: float = DEFAULT_VAL_FRACTION
    leakage: Leakage = DEFAULT_LEAKAGE  # duplicates across splits: dropped, or only reported
    task: TaskName = "classification"
    # The request's recipe choices (docs/training.md, "Recipe").
    augmentation: Augmentation = DEFAULT_AUGMENTATION
    horizontal_flip: bool = True  # False: no preset flips (left/right matters)
    # Stop after this many epochs without a better validation score (None: every epoch).
    patience: int | None = None
    class_weighting: ClassWeighting = DEFAULT_CLASS_WEIGHTING
    # Held out per class before the validation split; None: only a test/ folder's images.
    test_fraction: float | None = None
    threshold_precision: float = DEFAULT_THRESHOLD_PRECISION
    # The engine's own recipe (not request fields; bench/quality.py switches them).
    ema: bool = True  # evaluate an exponential moving average of the weights too
    warmup: bool = False  # ramp the rate up over the first epoch (measured: no gain yet)
    precise_batch_norm: bool = True  # re-estimate batch-norm statistics before evaluating
    # With precise_batch_norm: evaluate with the running statistics first and keep them where
    # they validate strictly better (ResNet-18's momentum 0.1 keeps them current).
    batch_norm_choice: bool = True
    label_smoothing: float = 0.1  # measured: +1.4 points on digits, +6 on shapes (3 seeds)
    # torch.compile's backend for the training step ("inductor"; worker/engine/device.py);
    # None: eager. Off until bench/gpu_check.py measures a gain on a GPU.
    compile_backend: str | None = None
    # Also checkpoint inside an epoch after this many seconds of training (None: only at
    # each epoch's end). Not result-defining: a resume continues the same run either way.
    checkpoint_seconds: float | None = None

    def __post_init__(self) -> None:
        problems = [
            f"{name} {rule} (got {value!r})" for name, value, ok, rule in self._rules() if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))

    def _rules(self) -> list[tuple[str, object, bool, str]]:
        architectures = ARCHITECTURES.get(self.task, ())
        tasks = ", ".join(ARCHITECTURES)
        return [
            ("epochs", self.epochs, self.epochs >= 1, "must be at least 1"),
            ("learning_rate", self.learning_rate, self.learning_rate > 0, "must be > 0"),
            (
                "image_size",
                self.image_size,
                self.image_size >= MIN_IMAGE_SIZE,
                f"must be at least {MIN_IMAGE_SIZE}",
            ),
            ("batch_size", self.batch_size, self.batch_size >= 1, "must be at least 1"),
            ("step_size", self.step_size, self.step_size >= 1, "must be at least 1"),
            ("gamma", self.gamma, 0 < self.gamma <= 1, "must be in (0, 1]"),
            ("task", self.task, self.task in ARCHITECTURES, f"must be one of {tasks}"),
            (
                "architecture",
                self.architecture,
                self.architecture in architectures,
                f"must be one of {', '.join(architectures)} for {self.task}",
            ),
            (
                "pretrained",
                self.pretrained,
                self.pretrained in PRETRAINED_POLICIES,
                f"must be one of {', '.join(PRETRAINED_POLICIES)}",
            ),
            (
                "precision",
                self.precision,
                self.precision in PRECISION_REQUESTS,
                f"must be one of {', '.join(PRECISION_REQUESTS)}",
            ),
            ("cache_bytes", self.cache_bytes, self.cache_bytes >= 0, "must be >= 0"),
            (
                "jpeg_decoder",
                self.jpeg_decoder,
                self.jpeg_decoder in JPEG_DECODERS,
                f"must be one of {', '.join(JPEG_DECODERS)}",
            ),
            (
                "num_workers",
                self.num_workers,
                self.num_workers is None or self.num_workers >= 0,
                "must be >= 0",
            ),
            ("val_fraction", self.val_fraction, 0 < self.val_fraction < 1, "must be in (0, 1)"),
            (
                "augmentation",
                self.augmentation,
                self.augmentation in AUGMENTATIONS,
                f"must be one of {', '.join(AUGMENTATIONS)}",
            ),
            (
                "checkpoint_seconds",
                self.checkpoint_seconds,
                self.checkpoint_seconds is None or self.checkpoint_seconds >= 0,
                "must be >= 0",
            ),
            (
                "compile_backend",
                self.compile_backend,
                self.compile_backend is None or bool(self.compile_backend),
                "must be a torch.compile backend's name, or None to train eagerly",
            ),
            (
                "label_smoothing",
                self.label_smoothing,
                0 <= self.label_smoothing < 1,
                "must be in [0, 1)",
            ),
            (
                "patience",
                self.patience,
                self.patience is None or self.patience >= 1,
                "must be at least 1",
            ),
            (
                "class_weighting",
                self.class_weighting,
                self.class_weighting in CLASS_WEIGHTINGS,
                f"must be one of {', '.join(CLASS_WEIGHTINGS)}",
            ),
            (
                "test_fraction",
                self.test_fraction,
                self.test_fraction is None or 0 < self.test_fraction <= MAX_TEST_FRACTION,
                f"must be in (0, {MAX_TEST_FRACTION:g}]",
            ),
            (
                "threshold_precision",
                self.threshold_precision,
                0 < self.threshold_precision <= 1,
                "must be in (0, 1]",
            ),
            (
                "leakage",
                self.leakage,
                self.leakage in LEAKAGES,
                f"must be one of {', '.join(LEAKAGES)}",
            ),
        ]

    @property
    def check_options(self) -> tuple[Any, ...]:
        """What decides a task's dataset check (its split and cache): a config that differs
        here is checked again. test_fraction is None for detection, which the API enforces."""
        return (
            self.image_size,
            self.val_fraction,
            self.seed,
            self.test_fraction,
            self.leakage,
            self.cache_bytes,
            self.jpeg_decoder,
        )

    @property
    def loader_workers(self) -> int:
        """Data-loader worker processes: num_workers when set (0: load in the main process)."""
        if self.num_workers is not None:
            return self.num_workers
        return min(MAX_AUTO_WORKERS, os.cpu_count() or 1)

    @property
    def threads(self) -> int:
        """Decode threads: as many as loader workers, and at least one."""
        return self.loader_workers or 1

    def to_dict(self) -> dict[str, Any]:
        """Plain values only, for checkpoints and metrics.json."""
        values = asdict(self)
        values["weights_dir"] = str(self.weights_dir) if self.weights_dir else None
        return values

    def as_resumed(self, saved: dict[str, Any]) -> TrainConfig:
        """This config for resuming a checkpoint whose config is saved: fields it predates
        take their LEGACY_VALUES."""
        missing = {name: value for name, value in LEGACY_VALUES.items() if name not in saved}
        return replace(self, **missing) if missing else self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of to_dict; unknown keys (from a newer engine) are ignored."""
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        if kept.get("weights_dir"):
            kept["weights_dir"] = Path(kept["weights_dir"])
        return cls(**kept)
