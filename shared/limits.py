"""The contract's values: architectures, formats, presets, defaults and limits.

Plain Python on purpose: the training engine and the benchmarks read these on a GPU host
that has torch and torchvision but no pydantic. shared/contract.py builds the request,
message, row and response models on them and re-exports every name.
"""

from __future__ import annotations

from typing import Literal, get_args

# Classifier architectures the worker can build (torchvision names); the first is the default.
CLASSIFICATION_ARCHITECTURES: tuple[str, ...] = (
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
)

# Detector architectures (torchvision names); the first, the mobile one, is the default.
DETECTION_ARCHITECTURES: tuple[str, ...] = (
    "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
)

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "coreml", "pytorchmobile", "torch", "executorch")
# The lite interpreter and ExecuTorch cannot carry torchvision's detectors (ImageList, NMS).
DETECTION_EXPORT_FORMATS: tuple[str, ...] = ("onnx", "coreml", "torch")
# Core ML's detection pipeline decodes against a fixed anchor set: SSD has one, the two-stage
# and FPN detectors do not.
COREML_DETECTION_ARCHITECTURES: tuple[str, ...] = ("ssdlite320_mobilenet_v3_large",)
DEFAULT_EXPORT: tuple[str, ...] = ("onnx", "coreml")
# Precision variants of the exports (docs/exports.md "Precision variants"). fp32 is always
# made: the plain format files, and what every variant is measured against. The others are
# extra files of the formats that make them (classification only); TorchScript and the lite
# interpreter stay float32 (torch's dynamic int8 quantizes Linear layers only).
ExportPrecision = Literal["fp32", "fp16", "int8"]
EXPORT_PRECISIONS: tuple[str, ...] = get_args(ExportPrecision)
DEFAULT_EXPORT_PRECISION: tuple[str, ...] = ("fp32",)
VARIANT_FORMATS: dict[str, tuple[str, ...]] = {
    "fp16": ("onnx", "coreml"),
    "int8": ("onnx", "coreml", "executorch"),
}
# A variant more than this below fp32's validation accuracy is not delivered (1 point).
DEFAULT_EXPORT_TOLERANCE = 0.01

# Training augmentation: a preset, or "auto" (the engine picks what the run can afford;
# docs/training.md "Recipe"). horizontal_flip=False turns every preset's flips off.
Augmentation = Literal["auto", "none", "light", "standard"]
AUGMENTATIONS: tuple[str, ...] = get_args(Augmentation)
DEFAULT_AUGMENTATION: Augmentation = "auto"

# Class imbalance (docs/training.md "Class imbalance"): "balanced" weights each class's loss by
# total / (classes × its images); "auto" does so when the largest class has at least
# AUTO_BALANCE_RATIO times the smallest one's images. Classification only.
ClassWeighting = Literal["none", "balanced", "auto"]
CLASS_WEIGHTINGS: tuple[str, ...] = get_args(ClassWeighting)
DEFAULT_CLASS_WEIGHTING: ClassWeighting = "auto"
AUTO_BALANCE_RATIO = 3.0
# The row's files key (and the status field) of the dataset check's dataset_report.json.
DATASET_REPORT_KEY = "dataset_report"
# A held-out test split, scored once with the best epoch's model: at most this share.
MAX_TEST_FRACTION = 0.3
# A picture the dataset check finds in more than one of train/val/test (docs/training.md
# "Dataset check"): "drop" keeps duplicates on one side of a seeded split and drops the
# val/test copies from given folders; "keep" only reports them.
Leakage = Literal["drop", "keep"]
LEAKAGES: tuple[str, ...] = get_args(Leakage)
DEFAULT_LEAKAGE: Leakage = "drop"
# Per-class thresholds shipped with a classifier reach this precision on validation images.
DEFAULT_THRESHOLD_PRECISION = 0.9

DEFAULT_EPOCHS = 10
DEFAULT_LEARNING_RATE = 0.01
DEFAULT_IMAGE_SIZE = 224
DEFAULT_BATCH_SIZE = 36
DEFAULT_STEP_SIZE = 10
DEFAULT_GAMMA = 0.1
MIN_EPOCHS, MAX_EPOCHS = 2, 99
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 768
MIN_BATCH_SIZE = 1
MIN_DETECTION_BATCH_SIZE = 2
MIN_STEP_SIZE = 1
# learning_rate and gamma lie in (0, MAX]: above 0, at most the maximum.
MAX_LEARNING_RATE = 1.0
MAX_GAMMA = 1.0
# The seed's dev VM allows 36; deployments with larger GPUs raise it in settings.
DEFAULT_MAX_BATCH_SIZE = 36
