"""The `aitrainer` commands: train, check-dataset, status, list, download, cancel, delete, check.

Output goes to stdout; a failure is one `error: …` line on stderr and a non-zero exit
(1 an error, 2 a usage error, 3 a training that ended FAILED or CANCELLED, 130 Ctrl-C).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from cli import config
from cli.check_dataset import check_local_dataset, print_report
from cli.client import ApiClient
from cli.download import Downloaded, download
from cli.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TRAINING_FAILED,
    EXIT_USAGE,
    CliError,
    Interrupted,
    command,
    keep_secret,
    one_line,
)
from cli.progress import accuracy_name, figures, follow
from cli.upload import LocalDataset, UploadedDataset, scan, upload
from shared.contract import (
    AUGMENTATIONS,
    CLASSIFICATION_ARCHITECTURES,
    COREML_DETECTION_ARCHITECTURES,
    DEFAULT_AUGMENTATION,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_EXPORT,
    DEFAULT_EXPORT_TOLERANCE,
    DEFAULT_GAMMA,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_LEAKAGE,
    DEFAULT_LEARNING_RATE,
    DEFAULT_STEP_SIZE,
    DETECTION_ARCHITECTURES,
    DETECTION_EXPORT_FORMATS,
    EXPORT_FORMATS,
    EXPORT_PRECISIONS,
    LEAKAGES,
    MAX_EPOCHS,
    MAX_GAMMA,
    MAX_IMAGE_SIZE,
    MAX_LEARNING_RATE,
    MIN_BATCH_SIZE,
    MIN_DETECTION_BATCH_SIZE,
    MIN_EPOCHS,
    MIN_IMAGE_SIZE,
    MIN_STEP_SIZE,
    StartTrainingRequest,
    State,
    StatusResponse,
    describe_validation_error,
)

ENV_DEBUG = "AITRAINER_CLI_DEBUG"
Command = TypeVar("Command", bound=Callable[..., Any])


def _console() -> Console:
    # soft_wrap: a long line stays one line in logs and pipes instead of wrapping at 80.
    return Console(highlight=False, soft_wrap=True)


def _say(console: Console, text: str) -> None:
    """Print text that may hold user or server strings (never read as rich markup)."""
    console.print(text, markup=False)


def api_options(function: Command) -> Command:
    """--api-url and --token, accepted by every command that talks to the API."""
    function = click.option(
        "--token",
        envvar=config.ENV_TOKEN,
        show_envvar=True,
        help="API token (sent as `Authorization: Bearer …`; never printed).",
    )(function)
    function = click.option(
        "--api-url",
        envvar=config.ENV_API_URL,
        show_envvar=True,
        default=config.DEFAULT_API_URL,
        show_default=True,
        help="The AI Trainer API.",
    )(function)
    return function


def _client(api_url: str, token: str | None) -> ApiClient:
    keep_secret(token)
    return ApiClient(config.ApiConfig.build(api_url, token))


def _version() -> str:
    try:
        return metadata.version("aitrainer")
    except metadata.PackageNotFoundError:  # run from a checkout: `python -m cli`
        return "from source"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="aitrainer")
def cli() -> None:
    """Train phone-ready image classifiers with AI Trainer from the command line."""


# train ------------------------------------------------------------------------------------


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--project", required=True, help="Project name: unique per profile.")
@click.option(
    "--profile",
    envvar=config.ENV_PROFILE,
    show_envvar=True,
    default=config.DEFAULT_PROFILE,
    show_default=True,
    help="Profile id the training belongs to.",
)
@click.option(
    "--epochs", type=int, help=f"{MIN_EPOCHS}–{MAX_EPOCHS} (server default {DEFAULT_EPOCHS})."
)
@click.option(
    "--learning-rate",
    type=float,
    help=f"In (0, {MAX_LEARNING_RATE:g}] (server default {DEFAULT_LEARNING_RATE:g}).",
)
@click.option(
    "--image-size",
    type=int,
    help=f"{MIN_IMAGE_SIZE}–{MAX_IMAGE_SIZE} pixels (server default {DEFAULT_IMAGE_SIZE}).",
)
@click.option(
    "--batch-size",
    type=int,
    help=f"{MIN_BATCH_SIZE} to the server's limit (default {DEFAULT_BATCH_SIZE}; "
    f"at least {MIN_DETECTION_BATCH_SIZE} for detection).",
)
@click.option(
    "--step-size",
    type=int,
    help=f"Epochs between learning-rate decays, at least {MIN_STEP_SIZE} "
    f"(default {DEFAULT_STEP_SIZE}).",
)
@click.option(
    "--gamma",
    type=float,
    help=f"Learning-rate decay factor in (0, {MAX_GAMMA:g}] (default {DEFAULT_GAMMA:g}).",
)
@click.option(
    "--export",
    "exports",
    multiple=True,
    metavar="FORMAT",
    help=f"Repeatable or comma-separated: {', '.join(EXPORT_FORMATS)} (default "
    f"{', '.join(DEFAULT_EXPORT)}; detection: {', '.join(DETECTION_EXPORT_FORMATS)}, coreml "
    f"only for {' or '.join(COREML_DETECTION_ARCHITECTURES)}).",
)
@click.option(
    "--export-precision",
    "export_precisions",
    multiple=True,
    metavar="PRECISION",
    help=f"Repeatable or comma-separated: {', '.join(EXPORT_PRECISIONS)}; fp32 is always "
    "made, fp16 and int8 add ONNX files scored on the validation split (docs/exports.md).",
)
@click.option(
    "--export-tolerance",
    type=float,
    help="Validation accuracy a variant may lose to fp32 and still be delivered, as a "
    f"fraction: 0.01 is one point (default {DEFAULT_EXPORT_TOLERANCE:g}).",
)
@click.option(
    "--model-type",
    type=click.Choice(["classification", "detection"]),
    default="classification",
    show_default=True,
    help="detection: a COCO, YOLO or Pascal VOC dataset (docs/detection.md).",
)
@click.option(
    "--architecture",
    help=f"Classification: {', '.join(CLASSIFICATION_ARCHITECTURES)}; detection: "
    f"{', '.join(DETECTION_ARCHITECTURES)} (default: the first of each).",
)
@click.option(
    "--augmentation",
    type=click.Choice(AUGMENTATIONS),
    help=f"Training augmentation preset (default {DEFAULT_AUGMENTATION}: the strength the "
    "run can afford; docs/training.md).",
)
@click.option(
    "--no-flip",
    "no_flip",
    is_flag=True,
    help="Never mirror images left to right (text, digits, left/right teeth).",
)
@click.option(
    "--leakage",
    type=click.Choice(LEAKAGES),
    help=f"A picture in more than one of train/val/test: drop the later copies or keep them "
    f"(default {DEFAULT_LEAKAGE}; docs/training.md).",
)
@click.option(
    "--no-check",
    "no_check",
    is_flag=True,
    help="Upload without checking the dataset here first (the worker still checks it).",
)
@click.option("--webhook-url", help="Where the worker POSTs progress events.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to download the model files (default ./PROJECT).",
)
@click.option("--detach", is_flag=True, help="Start the training and exit without following it.")
@click.option(
    "--storage",
    type=click.Choice(["azure", "aws"]),
    help="Where to upload the dataset (default: whichever credentials are set).",
)
@click.option(
    "--container",
    envvar=config.ENV_CONTAINER,
    show_envvar=True,
    help=f"Azure container (default '{config.DEFAULT_AZURE_CONTAINER}') or S3 bucket.",
)
@click.option(
    "--storage-connection-string",
    envvar=config.ENV_STORAGE_CONNECTION_STRING,
    show_envvar=True,
    help="Azure Storage connection string for the dataset upload.",
)
@click.option("--aws-access-key-id", envvar=config.ENV_AWS_ACCESS_KEY_ID, show_envvar=True)
@click.option("--aws-secret-access-key", envvar=config.ENV_AWS_SECRET_ACCESS_KEY, show_envvar=True)
@click.option("--aws-session-token", envvar=config.ENV_AWS_SESSION_TOKEN, show_envvar=True)
@click.option("--aws-region", envvar=config.ENV_AWS_REGION, show_envvar=True)
@click.option(
    "--s3-endpoint-url",
    envvar=config.ENV_S3_ENDPOINT_URL,
    show_envvar=True,
    help="An S3-compatible endpoint for the upload (the workers need the same).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=config.DEFAULT_POLL_SECONDS,
    hidden=True,
)
@api_options
def train(
    dataset: Path,
    project: str,
    profile: str,
    epochs: int | None,
    learning_rate: float | None,
    image_size: int | None,
    batch_size: int | None,
    step_size: int | None,
    gamma: float | None,
    exports: tuple[str, ...],
    export_precisions: tuple[str, ...],
    export_tolerance: float | None,
    model_type: str,
    architecture: str | None,
    augmentation: str | None,
    no_flip: bool,
    leakage: str | None,
    no_check: bool,
    webhook_url: str | None,
    out: Path | None,
    detach: bool,
    storage: str | None,
    container: str | None,
    storage_connection_string: str | None,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
    aws_session_token: str | None,
    aws_region: str | None,
    s3_endpoint_url: str | None,
    poll_interval: float,
    api_url: str,
    token: str | None,
) -> None:
    """Upload DATASET (a folder or a .zip), train on it, download the model.

    Classification: one folder per class. Detection: COCO, YOLO or Pascal VOC annotations.

    The dataset goes to the configured storage under <profile>/<project>; the model files
    go to ./PROJECT (or --out) when the training succeeds.
    """
    keep_secret(storage_connection_string, aws_secret_access_key, aws_session_token)
    console = _console()
    local = scan(dataset)
    where = config.StorageConfig.build(
        storage,
        container,
        storage_connection_string,
        aws_access_key_id,
        aws_secret_access_key,
        aws_session_token,
        aws_region,
        s3_endpoint_url,
    )
    params: dict[str, Any] = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "image_size": image_size,
        "batch_size": batch_size,
        "step_size": step_size,
        "gamma": gamma,
        "architecture": architecture,
        "augmentation": augmentation,
        "horizontal_flip": False if no_flip else None,
        "leakage": leakage,
        "webhook_url": webhook_url,
        "export": _listed(exports) or None,
        # fp32 is always made: saying int8 means "int8 too".
        "export_precision": ["fp32", *_listed(export_precisions)] if export_precisions else None,
        "export_tolerance": export_tolerance,
    }
    body: dict[str, Any] = {
        "profile_id": profile,
        "project_name": project,
        "model_type": model_type,
        **{name: value for name, value in params.items() if value is not None},
    }
    _validate_locally(body, where)
    with _client(api_url, token) as client:
        _preflight(client, console, profile, project)
        if not no_check:  # after the API said yes to the name: a big set takes a while
            _check_before_upload(console, dataset, body)
        uploaded = _upload(console, local, where, f"{profile}/{project}")
        answer = client.start(body | uploaded.fields)
        _say(console, f"started {profile}/{project}: {answer.message}")
        follow_command = command("status", profile, project, "--follow")
        if detach:
            _say(console, f"follow it with: {follow_command}")
            return
        try:
            final = follow(client, profile, project, console, poll_interval)
        except KeyboardInterrupt:
            raise Interrupted(
                f"stopped following {profile}/{project}; the training continues on the "
                f"server. Follow it again with: {follow_command}"
            ) from None
        _finish(console, final, out or Path(project))


def _listed(options: tuple[str, ...]) -> list[str]:
    """A repeatable option's values, each of which may be comma-separated."""
    return [name.strip() for item in options for name in item.split(",") if name.strip()]


def _check_before_upload(console: Console, dataset: Path, body: dict[str, Any]) -> None:
    """The worker's dataset check, here: its summary, and no upload when it would fail."""
    report = check_local_dataset(
        dataset,
        body["model_type"],
        body.get("image_size", DEFAULT_IMAGE_SIZE),
        body.get("leakage", DEFAULT_LEAKAGE),
    )
    _say(console, report.summary())
    if report.errors:
        raise CliError(
            f"the dataset check failed: {'; '.join(report.errors)}; nothing was uploaded "
            f"(details: {command('check-dataset', str(dataset))})"
        )


def _validate_locally(body: dict[str, Any], where: config.StorageConfig) -> None:
    """Refuse what the API would refuse before uploading anything; same rules, same words.

    The batch-size limit and webhook policy are the server's settings: it checks those.
    """
    probe = body | {
        "storage_type": where.kind,
        "container": where.container,
        "folder": "dataset",
        "zipped": False,
        "azure_connection_string": "probe",
        "aws_access_key_id": "probe",
        "aws_secret_access_key": "probe",
    }
    try:
        StartTrainingRequest.model_validate(
            probe, context={"max_batch_size": sys.maxsize, "allow_private_webhooks": True}
        )
    except ValidationError as error:
        raise CliError(describe_validation_error(error)) from None


def _preflight(client: ApiClient, console: Console, profile: str, project: str) -> None:
    """Before uploading: the API answers, takes the token, and the name is free."""
    health = client.check()
    if health.result != "Ok":
        _say(
            console, f"note: {health.message}; the training waits in the queue until a worker runs"
        )
    existing = client.find(profile, project)
    if existing is not None:
        # Checked before the upload: it would overwrite the dataset that training uses.
        raise CliError(
            f"a training named '{project}' already exists for profile '{profile}' "
            f"({existing.result.value}); choose another --project, or remove the finished one "
            f"with: {command('delete', profile, project)}"
        )


def _upload(
    console: Console, local: LocalDataset, where: config.StorageConfig, prefix: str
) -> UploadedDataset:
    size = local.total_bytes
    scheme = "azure" if where.kind == "azure" else "s3"
    count = f"{len(local.files)} file{'s' if len(local.files) != 1 else ''}"
    what = "the zip" if local.zipped else count
    _say(
        console,
        f"uploading {what} ({_size(size)}) from {local.path} to {scheme}://{where.container}/"
        f"{prefix}",
    )
    bar = Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    began = time.monotonic()
    with bar:
        task = bar.add_task("upload", total=size)
        try:
            uploaded = upload(local, where, prefix, lambda sent: bar.advance(task, sent))
        except KeyboardInterrupt:
            raise Interrupted("interrupted during the upload; no training was started") from None
    _say(console, f"uploaded in {time.monotonic() - began:.1f} s")
    return uploaded


def _finish(console: Console, final: StatusResponse, out: Path) -> None:
    key = f"{final.profile_id}/{final.project_name}"
    if final.result != State.SUCCESS:
        raise CliError(
            f"training {key} ended {final.result.value}: {final.message}",
            EXIT_TRAINING_FAILED,
        )
    got = _download(console, final, out)
    _report(console, final, got)


def _download(console: Console, status: StatusResponse, out: Path) -> Downloaded:
    try:
        return download(status, out, console)
    except KeyboardInterrupt:
        again = command("download", status.profile_id, status.project_name)
        raise Interrupted(f"download interrupted; run `{again}` to fetch the files") from None


def _report(console: Console, status: StatusResponse, got: Downloaded) -> None:
    metrics = (got.manifest or {}).get("metrics", {})
    best = metrics.get("best_epoch")
    if status.accuracy is not None:
        at = f" (best epoch {best} of {status.epochs})" if best else ""
        _say(console, f"validation {accuracy_name(status)}: {status.accuracy:.1%}{at}")
    checked = " (sha256 checked against manifest.json)" if got.manifest else ""
    _say(console, f"downloaded {len(got.files)} files to {got.out_dir}{checked}:")
    formats = {name: fmt for fmt, name in got.model_files().items()}
    for name in got.files:
        size = _size((got.out_dir / name).stat().st_size)
        label = f"  {formats[name]} model" if name in formats else ""
        _say(console, f"  {name:<32} {size:>9}{label}")


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


# status, list, download, cancel, delete, check -------------------------------------------


@cli.command()
@click.argument("profile")
@click.argument("project")
@click.option("--follow", "-f", "keep_following", is_flag=True, help="Follow until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=config.DEFAULT_POLL_SECONDS,
    hidden=True,
)
@api_options
def status(
    profile: str,
    project: str,
    keep_following: bool,
    as_json: bool,
    poll_interval: float,
    api_url: str,
    token: str | None,
) -> None:
    """Show a training's state and progress (--follow: until it ends)."""
    console = _console()
    with _client(api_url, token) as client:
        if keep_following:
            try:
                answer = follow(client, profile, project, console, poll_interval)
            except KeyboardInterrupt:
                raise Interrupted(
                    f"stopped following {profile}/{project}; the training continues"
                ) from None
        else:
            answer = client.status(profile, project)
    if as_json:
        click.echo(answer.model_dump_json(indent=2))
    else:
        _show_status(console, answer)
    if keep_following and answer.result != State.SUCCESS:
        raise CliError(
            f"training {profile}/{project} ended {answer.result.value}: {answer.message}",
            EXIT_TRAINING_FAILED,
        )


def _show_status(console: Console, answer: StatusResponse) -> None:
    p = answer.parameters
    _say(console, f"{answer.profile_id}/{answer.project_name}: {answer.result.value}")
    _say(console, f"  {figures(answer)}")
    _say(console, f"  message: {answer.message}")
    _say(
        console,
        f"  created {answer.created:%Y-%m-%d %H:%M:%S} UTC, "
        f"last update {answer.lastupdate:%Y-%m-%d %H:%M:%S} UTC",
    )
    _say(
        console,
        f"  {p.architecture}, {p.epochs} epochs, image size {p.image_size}, batch size "
        f"{p.batch_size}, learning rate {p.learning_rate:g} (×{p.gamma:g} every {p.step_size} "
        f"epochs), augmentation {p.augmentation}{'' if p.horizontal_flip else ' without flips'}, "
        f"export {', '.join(p.export)}",
    )
    if answer.exports:
        fetch = command("download", answer.profile_id, answer.project_name)
        _say(console, f"  exports: {', '.join(answer.exports)}; download with: {fetch}")


@cli.command(name="list")
@click.argument("profile")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@api_options
def list_trainings(profile: str, as_json: bool, api_url: str, token: str | None) -> None:
    """List a profile's trainings, newest first."""
    with _client(api_url, token) as client:
        answer = client.trainings(profile)
    if as_json:
        click.echo(answer.model_dump_json(indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("project", "state", "created (UTC)", "last update (UTC)"):
        table.add_column(column, no_wrap=True)
    for item in answer.trainings:
        table.add_row(
            item.project_name,
            item.result.value,
            f"{item.created:%Y-%m-%d %H:%M}",
            f"{item.lastupdate:%Y-%m-%d %H:%M}",
        )
    _console().print(table)


@cli.command(name="download")
@click.argument("profile")
@click.argument("project")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to put the files (default ./PROJECT).",
)
@api_options
def download_command(
    profile: str, project: str, out: Path | None, api_url: str, token: str | None
) -> None:
    """Download a training's model files, manifest, labels, metrics and plots."""
    console = _console()
    with _client(api_url, token) as client:
        answer = client.status(profile, project)
    if not answer.result.finished:
        raise CliError(
            f"training {profile}/{project} is {answer.result.value}; nothing to download until "
            f"it ends (follow it with: {command('status', profile, project, '--follow')})"
        )
    if answer.result != State.SUCCESS:
        _say(console, f"note: the training ended {answer.result.value}: {answer.message}")
    got = _download(console, answer, out or Path(project))
    _report(console, answer, got)


@cli.command()
@click.argument("profile")
@click.argument("project")
@api_options
def cancel(profile: str, project: str, api_url: str, token: str | None) -> None:
    """Cancel a training: a queued one ends at once, a running one at its next batch (an
    exporting one before its next format)."""
    with _client(api_url, token) as client:
        answer = client.cancel(profile, project)
    _say(_console(), f"{profile}/{project}: {answer.result.value} — {answer.message}")


@cli.command()
@click.argument("profile")
@click.argument("project")
@api_options
def delete(profile: str, project: str, api_url: str, token: str | None) -> None:
    """Delete a finished training and its files, so the project name can be used again."""
    with _client(api_url, token) as client:
        message = client.delete(profile, project)
    _say(_console(), message)


@cli.command(name="check-dataset")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--model-type",
    type=click.Choice(["classification", "detection"]),
    default="classification",
    show_default=True,
)
@click.option(
    "--image-size",
    type=click.IntRange(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
    default=DEFAULT_IMAGE_SIZE,
    show_default=True,
    help="The size you will train at: smaller images are reported.",
)
@click.option("--leakage", type=click.Choice(LEAKAGES), default=DEFAULT_LEAKAGE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print dataset_report.json instead.")
def check_dataset(
    dataset: Path, model_type: str, image_size: int, leakage: str, as_json: bool
) -> None:
    """Check DATASET (a folder or a .zip) here, as the worker will: unreadable files,
    duplicates, leaks between splits, class balance, small images (nothing is uploaded).

    Exits 1 when the worker would refuse the dataset.
    """
    report = check_local_dataset(dataset, model_type, image_size, leakage)  # type: ignore[arg-type]
    console = _console()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=1, ensure_ascii=False))
    else:
        print_report(console, report)
    if report.errors:
        raise CliError(f"the worker would refuse this dataset: {'; '.join(report.errors)}")


@cli.command()
@api_options
def check(api_url: str, token: str | None) -> None:
    """Check that the API, its storage and at least one worker are up (GET /checkserver/)."""
    with _client(api_url, token) as client:
        answer = client.check()
    if answer.result != "Ok":
        raise CliError(f"the API at {client.config.url} is up but not ready: {answer.message}")
    _say(_console(), f"Ok: {answer.message} ({client.config.url})")


# entry point ------------------------------------------------------------------------------


def main(args: list[str] | None = None) -> None:
    """Run the CLI; every failure ends as one line on stderr and an exit code."""
    try:
        code = cli.main(args=args, prog_name="aitrainer", standalone_mode=False)
    except CliError as error:
        click.echo(error.line(), err=True)
        sys.exit(error.exit_code)
    except click.UsageError as error:
        hint = f" (see: {error.ctx.command_path} --help)" if error.ctx else ""
        click.echo(f"error: {one_line(error.format_message())}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except click.Abort:  # Ctrl-C outside the places that explain what it left behind
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as error:
        click.echo(f"error: {one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except Exception as error:
        if os.environ.get(ENV_DEBUG):
            raise
        text = CliError(f"unexpected {type(error).__name__}: {error}").line()
        click.echo(f"{text} (set {ENV_DEBUG}=1 for the traceback)", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)
