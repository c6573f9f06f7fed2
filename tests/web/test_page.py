"""The web page in a real browser against the real local stack: sign in, start a training
from the form, watch it reach SUCCESS without a reload, read the curves and the confusion
matrix, and quick-test the delivered model.onnx in the browser against onnxruntime in
Python fed by worker/export/host_preprocessing.py on the same files."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from dev.sample_data import CLASS_COLOURS, dataset_files, image_bytes
from dev.stack import REPO, Azurite
from function_app.api import ApiSettings
from shared.contract import StartTrainingRequest, State, TrainingRow
from shared.storage.account import StorageAccount
from shared.storage.artifacts import training_prefix
from shared.storage.jobs import JobsTable
from tests.conftest import TOKEN
from tests.function_app.helpers import start_body
from tests.worker.conftest import upload_azure
from worker.export.host_preprocessing import HostSteps, host_input
from worker.export.manifest import MANIFEST_FILE

SCREENSHOTS = REPO / "web" / "screenshots"
CLASSES = ("bad", "good", "okay")
# Smaller than the model's 32 px input and not square: the page upsamples (Pillow's order
# there is known) and crops; an image already 32 px on its short side is only cropped.
HELD_OUT = {"bad": (24, 20), "good": (20, 30), "okay": (32, 44)}


def held_out_files(folder: Path) -> dict[Path, str]:
    files = {}
    for name, (width, height) in HELD_OUT.items():
        square = Image.open(io.BytesIO(image_bytes(CLASS_COLOURS[name], 48, f"held-{name}")))
        path = folder / f"held-{name}.png"
        square.resize((width, height), Image.Resampling.BILINEAR).save(path)
        files[path] = name
    return files


def sign_in(page: Page, api_url: str, profile: str) -> None:
    page.goto(api_url + "/")  # redirects to /ui/
    page.fill("#token", TOKEN)
    page.fill("#profile", profile)
    page.click("#signin button[type=submit]")
    expect(page.locator("#who")).to_have_text(f"profile {profile}")


def fill_start_form(page: Page, azurite: Azurite, container: str) -> None:
    page.fill("#field-project_name", "colours")
    page.select_option("#field-model_type", "classification")
    page.select_option("#field-storage_type", "azure")
    page.fill("#field-container", container)
    # folder stays blank: the container's root, which the contract spells "".
    page.fill("#field-azure_connection_string", azurite.connection_string)
    page.select_option("#field-architecture", "resnet18")
    for field, value in {"epochs": "4", "image_size": "32", "batch_size": "8"}.items():
        page.fill(f"#field-{field}", value)
    for box in page.locator("input[name=export]").all():
        box.set_checked(box.get_attribute("value") == "onnx")


def test_the_page_starts_a_training_watches_it_and_runs_its_model(
    browser: Browser,
    settings: ApiSettings,
    azurite: Azurite,
    api_url: str,
    client: httpx.Client,
    dataset_container: Any,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    StorageAccount(settings).provision(web_origins=[api_url])
    upload_azure(dataset_container, "", dataset_files(CLASSES, per_class=12, size=40))
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    # A profile without trainings answers 404, which the browser logs; the page shows none.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text) if m.type == "error" and "status of 404" not in m.text else None
        ),
    )
    sign_in(page, api_url, "clinic")

    # The form checks the contract's rules before the API does.
    page.click("#new-training")
    page.fill("#field-epochs", "1")
    page.click("#start button[type=submit]")
    expect(page.locator('[data-error-for="epochs"]')).to_have_text("epochs must be at least 2")
    expect(page.locator('[data-error-for="project_name"]')).to_have_text("project_name is required")

    fill_start_form(page, azurite, dataset_container.container_name)
    page.click("#start button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/#/t/colours$"))  # the training's own page
    start_worker()
    expect(page.locator("#state")).to_have_text("SUCCESS", timeout=240_000)
    expect(page.locator("#quick-files")).to_be_attached(timeout=30_000)
    status = client.get("/statustraining/clinic/colours").json()
    metrics = requests.get(status["files"]["metrics"], timeout=30).json()
    manifest = requests.get(status["manifest"], timeout=30).json()

    # The curves hold exactly metrics.json's per-epoch values.
    loss = page.evaluate("document.querySelector('#loss-chart').uplot.data")
    accuracy = page.evaluate("document.querySelector('#accuracy-chart').uplot.data")
    epochs = metrics["epochs"]
    assert loss == [
        [e["epoch"] for e in epochs],
        [e["train_loss"] for e in epochs],
        [e["val_loss"] for e in epochs],
    ]
    assert accuracy == [[e["epoch"] for e in epochs], [e["val_accuracy"] for e in epochs]]
    # The confusion table counts every validation image once.
    counts = page.eval_on_selector_all(
        "#confusion tbody td", "cells => cells.map(c => Number(c.textContent))"
    )
    assert len(counts) == len(CLASSES) ** 2
    assert sum(counts) == metrics["dataset"]["val_images"] > 0
    expect(page.locator("#format-checks tr[data-format=onnx]")).to_contain_text("passed")
    expect(page.locator("#events")).to_contain_text("SUCCESS")

    # Quick test: the browser's probabilities are onnxruntime's on host_preprocessing's input.
    files = held_out_files(tmp_path)
    page.set_input_files("#quick-files", [str(path) for path in files])
    expect(page.locator("figure.prediction")).to_have_count(len(files), timeout=60_000)
    model = requests.get(status["exports"]["onnx"], timeout=30).content
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    steps = HostSteps.described(manifest["input"]["host_preprocessing"])
    for path, label in files.items():
        figure = page.locator(f'figure.prediction[data-file="{path.name}"]')
        shown = np.array(json.loads(figure.get_attribute("data-probabilities") or "[]"))
        (expected,) = session.run(None, {session.get_inputs()[0].name: host_input(path, steps)})
        assert np.abs(shown - expected[0]).max() <= 1e-4, (path.name, shown, expected[0])
        assert figure.get_attribute("data-top") == label
    assert problems == []

    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "training.png"), full_page=True)
    page.locator("#quick-test").screenshot(path=str(SCREENSHOTS / "quick-test.png"))


def publish_detector(settings: ApiSettings, tmp_path: Path, name: str) -> None:
    """A detector exported by the export package and published as a finished training (its
    training through the worker is test_detection_pipeline's; here the page is tested)."""
    from tests.worker.export.conftest import (
        DETECTION_IMAGE_SIZE,
        DETECTION_LABELS,
        DETECTION_METRICS,
        DETECTION_SCORE_THRESHOLD,
        DETECTOR,
        random_detector,
        rectangle_images,
    )
    from worker.export.detection.exporter import export_detector

    out = tmp_path / "detector"
    manifest = export_detector(
        model=random_detector(DETECTOR),
        class_names=DETECTION_LABELS,
        image_size=DETECTION_IMAGE_SIZE,
        architecture=DETECTOR,
        formats=["onnx"],
        check_images=rectangle_images(4, DETECTION_IMAGE_SIZE, seed=7),
        out_dir=out,
        metrics=DETECTION_METRICS,
        model_version="web-test",
        score_threshold=DETECTION_SCORE_THRESHOLD,
    )
    account = StorageAccount(settings)
    artifacts = account.artifacts()
    prefix = training_prefix("clinic", name)
    for file in manifest.upload_names():
        artifacts.upload_file(out / file, prefix + file)
    body = start_body(
        profile_id="clinic",
        project_name=name,
        model_type="detection",
        architecture=DETECTOR,
        image_size=DETECTION_IMAGE_SIZE,
        export=["onnx"],
    )
    row = TrainingRow.from_request(StartTrainingRequest.model_validate(body), None, "job")
    row.state, row.message = State.SUCCESS, "published by the test"
    row.exports = {"onnx": prefix + (manifest.model_file("onnx") or "")}
    row.files = {"manifest": prefix + MANIFEST_FILE}
    JobsTable(account.table(settings.trainings_table)).insert(row)


def reference_detections(model: bytes, path: Path, size: int) -> list[dict[str, Any]]:
    """onnxruntime in Python on the manifest's steps done with Pillow: stretch, scale."""
    picture = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(picture, dtype=np.float32).transpose(2, 0, 1)[None] / 255
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    boxes, scores, labels = session.run(None, {session.get_inputs()[0].name: pixels})
    return [
        {"box": box.tolist(), "score": float(score), "label": int(label)}
        for box, score, label in zip(boxes, scores, labels, strict=True)
    ]


def test_a_detectors_quick_test_draws_the_boxes_onnxruntime_finds(
    browser: Browser, settings: ApiSettings, api_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    from tests.worker.export.conftest import (
        DETECTION_IMAGE_SIZE,
        DETECTION_LABELS,
        rectangle_images,
    )

    StorageAccount(settings).provision(web_origins=[api_url])
    publish_detector(settings, tmp_path, "boxes")
    status = client.get("/statustraining/clinic/boxes").json()
    model = requests.get(status["exports"]["onnx"], timeout=30).content
    # Smaller than the 64 px input and not square: stretched up (Pillow's order is known).
    paths = []
    for index, image in enumerate(rectangle_images(4, 48, seed=11)[1:]):
        array = (image * 255).round().byte().permute(1, 2, 0).numpy()[:40]
        paths.append(tmp_path / f"boxes-{index}.png")
        Image.fromarray(array).save(paths[-1])
    expected = {
        path.name: reference_detections(model, path, DETECTION_IMAGE_SIZE) for path in paths
    }
    assert sum(map(len, expected.values())) > 0  # something to draw

    page = browser.new_page()
    sign_in(page, api_url, "clinic")
    page.goto(api_url + "/ui/#/t/boxes")
    expect(page.locator("#state")).to_have_text("SUCCESS")
    page.set_input_files("#quick-files", [str(path) for path in paths])
    expect(page.locator("figure.prediction")).to_have_count(len(paths), timeout=60_000)
    for path in paths:
        figure = page.locator(f'figure.prediction[data-file="{path.name}"]')
        shown = json.loads(figure.get_attribute("data-detections") or "[]")
        want = expected[path.name]
        assert [d["label"] for d in shown] == [DETECTION_LABELS[d["label"]] for d in want]
        for got, reference in zip(shown, want, strict=True):
            assert np.abs(np.array(got["box"]) - reference["box"]).max() <= 1
            assert abs(got["score"] - reference["score"]) <= 1e-3
    SCREENSHOTS.mkdir(exist_ok=True)
    page.locator("#quick-test").screenshot(path=str(SCREENSHOTS / "quick-test-detector.png"))

    # The list's buttons, each after a confirmation: cancel a queued training, delete one.
    queued = StartTrainingRequest.model_validate(start_body(profile_id="clinic"))
    JobsTable(StorageAccount(settings).table(settings.trainings_table)).insert(
        TrainingRow.from_request(queued, None, "queued-job")
    )
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(api_url + "/ui/#/")
    waiting = page.locator(f'tr[data-name="{queued.project_name}"]')
    expect(waiting).to_have_attribute("data-state", "PENDING")
    waiting.locator("button.cancel").click()
    expect(waiting).to_have_attribute("data-state", "CANCELLED")
    page.locator('tr[data-name="boxes"] button.delete').click()
    expect(page.locator('tr[data-name="boxes"]')).to_have_count(0)
    assert client.get("/statustraining/clinic/boxes").status_code == 404
