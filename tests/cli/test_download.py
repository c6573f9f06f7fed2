"""Download links become safe local names below the output folder."""

from __future__ import annotations

from cli.download import local_name, planned
from shared.contract import StatusResponse
from tests.cli.test_progress import status_body

BASE = "http://127.0.0.1:10000/devstoreaccount1/models/alice/my%20shapes"


def test_links_keep_their_path_below_the_training_and_nothing_else() -> None:
    status = StatusResponse.model_validate(status_body(project_name="my shapes"))
    assert local_name(f"{BASE}/model.onnx?sv=1&sig=x", status, "f") == "model.onnx"
    assert local_name(f"{BASE}/plots/curves.png?sig=x", status, "f") == "plots/curves.png"
    # Each claim of a job delivers under runs/<claim token>/: that folder is not kept.
    run = f"{BASE}/runs/0add109b5ee44c03a6726fc69f7dc86d"
    assert local_name(f"{run}/model.onnx?sig=x", status, "f") == "model.onnx"
    assert local_name(f"{run}/plots/curves.png?sig=x", status, "f") == "plots/curves.png"
    assert local_name(f"{run}/../../x", status, "fallback") == "fallback"
    # Whatever a link says, nothing lands outside the folder.
    assert local_name(f"{BASE}/../../etc/passwd", status, "fallback") == "fallback"
    assert local_name(f"{BASE}/plots/%2E%2E/x", status, "fallback") == "fallback"
    assert local_name("https://elsewhere.example/x/model.pte?sig=1", status, "f") == "model.pte"


def test_every_offered_file_is_planned_once() -> None:
    status = StatusResponse.model_validate(
        status_body(
            "SUCCESS",
            4,
            project_name="my shapes",
            exports={"onnx": f"{BASE}/model.onnx?s", "coreml": f"{BASE}/model.mlpackage.zip?s"},
            manifest=f"{BASE}/manifest.json?s",
            files={"labels": f"{BASE}/labels.txt?s", "curves": f"{BASE}/plots/curves.png?s"},
        )
    )
    assert sorted(planned(status)) == [
        "labels.txt",
        "manifest.json",
        "model.mlpackage.zip",
        "model.onnx",
        "plots/curves.png",
    ]
