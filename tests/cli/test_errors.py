"""Every failure is one `error: …` line on stderr and a non-zero exit, before anything is
uploaded where that is possible; Ctrl-C says how to follow the training that goes on."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from cli.client import ApiClient
from cli.config import ApiConfig
from cli.errors import CliError
from dev.stack import Azurite, free_port
from tests.cli.conftest import TINY_FLAGS, Cli
from tests.conftest import TOKEN
from tests.function_app.helpers import start_body


def uploaded(azurite: Azurite, container: str) -> list[str]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(container)
    return [blob.name for blob in client.list_blobs()] if client.exists() else []


def test_a_wrong_token_is_refused_before_anything_is_uploaded(
    cli: Cli, photos: Path, azurite: Azurite, dataset_container: str
) -> None:
    result = cli.run("train", str(photos), "--project=x", AITRAINER_CLI_TOKEN="not-the-token")
    assert (result.returncode, result.stderr) == (1, "error: the API refused the token\n")
    assert "not-the-token" not in result.stdout + result.stderr
    assert uploaded(azurite, dataset_container) == []

    result = cli.run("list", "alice", AITRAINER_CLI_TOKEN=None)
    assert result.returncode == 1
    assert result.stderr == (
        "error: the API needs a token: pass --token or set AITRAINER_CLI_TOKEN\n"
    )


def test_an_unreachable_api_is_named_in_one_line(cli: Cli, photos: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (("check",), ("status", "alice", "x"), ("train", str(photos), "--project=x")):
        result = cli.run(*args, AITRAINER_CLI_API_URL=url)
        assert (result.returncode, result.stderr) == (1, f"error: cannot reach the API at {url}\n")
        assert result.stdout == ""


def test_a_duplicate_project_is_refused_before_its_dataset_is_overwritten(
    cli: Cli, photos: Path, client: httpx.Client, azurite: Azurite, dataset_container: str
) -> None:
    assert client.post("/starttraining/", json=start_body(project_name="teeth")).status_code == 202
    result = cli.run("train", str(photos), "--project=teeth", "--profile=alice", *TINY_FLAGS)
    assert result.returncode == 1
    assert result.stderr == (
        "error: a training named 'teeth' already exists for profile 'alice' (PENDING); "
        "choose another --project, or remove the finished one with: "
        "aitrainer delete alice teeth\n"
    )
    assert uploaded(azurite, dataset_container) == []


def test_the_apis_409_reaches_the_user_as_its_own_message(api_url: str) -> None:
    """A race the pre-check cannot see (two starts at once) ends in the API's 409 text."""
    body = start_body(project_name="race")
    with ApiClient(ApiConfig.build(api_url, TOKEN)) as api:
        assert api.start(body).status == "PENDING"
        with pytest.raises(CliError) as refused:
            api.start(body)
    assert refused.value.message == (
        "a training named 'race' already exists for profile 'alice'; choose another "
        "project_name or DELETE the finished one"
    )


def test_invalid_parameters_are_refused_with_the_apis_rule(
    cli: Cli, photos: Path, azurite: Azurite, dataset_container: str
) -> None:
    # Checked before uploading, with the contract's own words.
    result = cli.run("train", str(photos), "--project=x", "--epochs=1")
    assert (result.returncode, result.stderr) == (
        1,
        "error: epochs must be between 2 and 99 (got 1)\n",
    )
    result = cli.run("train", str(photos), "--project=x", "--export=onnx,tflite")
    assert result.stderr == (
        "error: export has unknown format 'tflite' "
        "(allowed: onnx, coreml, pytorchmobile, torch, executorch)\n"
    )
    result = cli.run(
        "train", str(photos), "--project=x", "--model-type=detection", "--export=pytorchmobile"
    )
    assert result.stderr == (
        "error: export format 'pytorchmobile' cannot carry a detector "
        "(allowed for detection: onnx, coreml, torch)\n"
    )
    result = cli.run(
        "train", str(photos), "--project=x", "--export=torch", "--export-precision=int8"
    )
    assert result.stderr == (
        "error: export_precision 'int8' is made for export formats onnx, coreml or "
        "executorch, and export names none of them (got torch)\n"
    )
    assert uploaded(azurite, dataset_container) == []

    # The batch-size limit is the server's setting: the API itself refuses it.
    result = cli.run("train", str(photos), "--project=x", "--batch-size=99")
    assert (result.returncode, result.stderr) == (
        1,
        "error: batch_size must be between 1 and 36 (got 99)\n",
    )

    result = cli.run("train", str(photos), "--project=x", "--epochs=two")
    assert result.returncode == 2
    assert result.stderr == (
        "error: Invalid value for '--epochs': 'two' is not a valid integer. "
        "(see: aitrainer train --help)\n"
    )


def test_a_missing_or_unusable_dataset_is_named(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = cli.run("train", str(missing), "--project=x")
    assert (result.returncode, result.stderr) == (1, f"error: dataset '{missing}' does not exist\n")
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)
    result = cli.run("train", str(empty), "--project=x")
    assert result.stderr == (
        f"error: dataset folder '{empty}' holds no files (one folder per class expected)\n"
    )
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = cli.run("train", str(text), "--project=x")
    assert result.stderr == f"error: dataset '{text}' is neither a folder nor a zip file\n"
    result = cli.run(
        "train", str(tmp_path), "--project=x", AITRAINER_CLI_STORAGE_CONNECTION_STRING=None
    )
    assert result.stderr == (
        "error: no dataset storage configured: set AITRAINER_CLI_STORAGE_CONNECTION_STRING "
        "(Azure) or AITRAINER_CLI_AWS_ACCESS_KEY_ID and AITRAINER_CLI_AWS_SECRET_ACCESS_KEY (S3)\n"
    )


def test_ctrl_c_leaves_the_training_running_and_says_how_to_follow_it(
    cli: Cli, photos: Path
) -> None:
    # No worker: the training waits in the queue, so it is still there after Ctrl-C.
    running = cli.start("train", str(photos), "--project=my teeth", "--profile=alice", *TINY_FLAGS)
    running.wait_for_output("PENDING")
    running.process.send_signal(signal.SIGINT)
    code, out, err = running.finish()
    assert "note: no worker online; 0 workers online, 0 jobs waiting" in out
    assert code == 130
    assert err == (
        "stopped following alice/my teeth; the training continues on the server. "
        "Follow it again with: aitrainer status alice 'my teeth' --follow\n"
    )

    status = cli.run("status", "alice", "my teeth")
    assert status.stdout.startswith("alice/my teeth: PENDING\n  epoch 0/2\n  message: queued\n")
    cancel = cli.run("cancel", "alice", "my teeth")
    assert cancel.stdout == "alice/my teeth: CANCELLED — cancelled before it started\n"
    followed = cli.run("status", "alice", "my teeth", "--follow")
    assert followed.returncode == 3
    assert followed.stderr == (
        "error: training alice/my teeth ended CANCELLED: cancelled before it started\n"
    )
    download = cli.run("download", "alice", "my teeth")
    assert (download.returncode, download.stderr) == (
        1,
        "error: training alice/my teeth has no files to download (it is CANCELLED)\n",
    )
    deleted = cli.run("delete", "alice", "my teeth")
    assert deleted.stdout == "training 'my teeth' deleted (0 files)\n"
    result = cli.run("status", "alice", "my teeth")
    assert (result.returncode, result.stderr) == (
        1,
        "error: no training 'my teeth' for profile 'alice'\n",
    )
    result = cli.run("check")
    assert (result.returncode, result.stderr) == (
        1,
        f"error: the API at {cli.env['AITRAINER_CLI_API_URL']} is up but not ready: "
        "no worker online; 0 workers online, 1 job waiting\n",  # the cancelled one's message
    )
