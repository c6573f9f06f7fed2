"""`aitrainer train --help` states the contract's limits and defaults, read from shared.contract."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.app import cli
from shared import contract


def option_help() -> dict[str, str]:
    """Each option of `train --help` and its help text, one line each."""
    result = CliRunner().invoke(cli, ["train", "--help"], terminal_width=1000)
    assert result.exit_code == 0, result.output
    # Click moves the help of an option with a long metavar to the lines below it.
    options: dict[str, str] = {}
    current = None
    for line in (line.strip() for line in result.output.splitlines()):
        if line.startswith("--"):
            current = line.split()[0]
            options[current] = line
        elif current and line:
            options[current] += " " + line
    return options


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (
            "--epochs",
            [f"{contract.MIN_EPOCHS}–{contract.MAX_EPOCHS}", f"default {contract.DEFAULT_EPOCHS})"],
        ),
        (
            "--learning-rate",
            [
                f"(0, {contract.MAX_LEARNING_RATE:g}]",
                f"default {contract.DEFAULT_LEARNING_RATE:g})",
            ],
        ),
        (
            "--image-size",
            [
                f"{contract.MIN_IMAGE_SIZE}–{contract.MAX_IMAGE_SIZE} pixels",
                f"default {contract.DEFAULT_IMAGE_SIZE})",
            ],
        ),
        (
            "--batch-size",
            [
                f"{contract.MIN_BATCH_SIZE} to the server's limit",
                f"default {contract.DEFAULT_BATCH_SIZE};",
                f"at least {contract.MIN_DETECTION_BATCH_SIZE} for detection",
            ],
        ),
        (
            "--step-size",
            [f"at least {contract.MIN_STEP_SIZE}", f"default {contract.DEFAULT_STEP_SIZE})"],
        ),
        (
            "--gamma",
            [f"(0, {contract.MAX_GAMMA:g}]", f"default {contract.DEFAULT_GAMMA:g})"],
        ),
        (
            "--export",
            [
                ", ".join(contract.EXPORT_FORMATS),
                f"default {', '.join(contract.DEFAULT_EXPORT)};",
                f"detection: {', '.join(contract.DETECTION_EXPORT_FORMATS)},",
                *contract.COREML_DETECTION_ARCHITECTURES,
            ],
        ),
        (
            "--architecture",
            [*contract.CLASSIFICATION_ARCHITECTURES, *contract.DETECTION_ARCHITECTURES],
        ),
        (
            "--augmentation",
            ["|".join(contract.AUGMENTATIONS), f"default {contract.DEFAULT_AUGMENTATION}:"],
        ),
    ],
)
def test_train_help_shows_the_contracts_limits_and_defaults(
    option: str, expected: list[str]
) -> None:
    text = option_help()[option]
    for fragment in expected:
        assert fragment in text, (option, fragment, text)
