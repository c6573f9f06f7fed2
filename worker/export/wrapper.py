"""The one module every format is exported from: [0, 1] RGB in, class probabilities out."""

from __future__ import annotations

import copy

import torch
from torch import nn

from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD


class ProbabilityClassifier(nn.Module):
    """RGB NCHW float in [0, 1] → class probabilities; ImageNet normalisation and softmax inside.

    The normalisation is the same subtract-then-divide that training's ``v2.Normalize`` does,
    so the exported graph sees bit-for-bit the tensors the classifier was trained on.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.classifier((image - self.mean) / self.std)
        return torch.softmax(logits, dim=1)


def cpu_copy(model: nn.Module) -> nn.Module:
    """A float32, contiguous, eval-mode copy on the CPU; the caller's model is left untouched."""
    # Training may leave weights channels_last on CUDA; exporters and the mobile runtimes
    # expect plain contiguous CPU tensors.
    clone = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    clone = clone.to(memory_format=torch.contiguous_format)
    return clone.eval().requires_grad_(False)


def wrap(model: nn.Module) -> ProbabilityClassifier:
    """The export wrapper around a CPU copy of a trained logits classifier, in eval mode."""
    return ProbabilityClassifier(cpu_copy(model)).eval()
