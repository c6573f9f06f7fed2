"""The wrapper every format is exported from: normalisation and softmax inside, model untouched."""

from __future__ import annotations

import torch
from torch import nn

from tests.worker.export.conftest import normalise
from worker.classification.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from worker.export.wrapper import ProbabilityClassifier, wrap


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def test_the_wrapper_is_softmax_of_the_model_on_normalised_input() -> None:
    model = small_model().eval()
    images = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        expected = torch.softmax(model(normalise(images)), dim=1)
        got = wrap(model)(images)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(got.sum(1), torch.ones(5))


def test_the_wrapper_uses_trainings_normalisation_constants() -> None:
    wrapper = ProbabilityClassifier(nn.Identity())
    assert wrapper.mean.flatten().tolist() == list(torch.tensor(IMAGENET_MEAN).tolist())
    assert wrapper.std.flatten().tolist() == list(torch.tensor(IMAGENET_STD).tolist())


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_wrapping_copies_so_the_trained_model_keeps_its_mode_and_layout() -> None:
    model = small_model().to(memory_format=torch.channels_last).train()
    weight = first_conv(model).weight
    wrapper = wrap(model)
    assert model.training and not wrapper.training and not wrapper.classifier.training
    assert first_conv(model).weight is weight and weight.requires_grad
    assert weight.is_contiguous(memory_format=torch.channels_last)
    copied = first_conv(wrapper.classifier).weight
    assert copied is not weight
    assert copied.is_contiguous() and not copied.requires_grad
