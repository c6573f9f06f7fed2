"""One job's pipeline: download → check → train → export → upload, writing the row at each step.

The row is the source of truth: every write is conditional on its ETag, states only move
forward, and every write and upload first checks that the row still carries this job's
claim token, so a worker that lost the job (another took it over, or the training ended
elsewhere) finds out (LostJob) before it touches anything. Checkpoints go to a blob of the
claim's own and exports to a per-claim prefix; the row write that names them is the commit,
so a status never lists a mix of two claims' files.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from shared.connection_strings import connection_string_problem
from shared.contract import (
    DATASET_REPORT_KEY,
    MAX_EPOCHS,
    MIN_BATCH_SIZE,
    MIN_DETECTION_BATCH_SIZE,
    State,
    StatusResponse,
    TrainingRow,
    utcnow,
)
from shared.dataset_check import DatasetReport
from shared.storage.artifacts import (
    RUNS_FOLDER,
    ArtifactStore,
    delivery_prefix,
    resume_prefix,
    training_prefix,
)
from shared.storage.jobs import JobsTable, TrainingNotFound
from worker.claim import job_key
from worker.classification.task import plural
from worker.engine.checkpoint import ClassesChanged
from worker.engine.config import TrainConfig
from worker.engine.control import TrainingCancelled, TrainingDiverged, TrainingInterrupted
from worker.engine.data import DatasetError, WeightsMissingError
from worker.engine.loop import StepCheckpoint, fit
from worker.engine.results import (
    CHECKPOINT_LAST,
    METRICS_FILE,
    EpochReport,
    TrainResult,
    write_json,
)
from worker.export import LABELS_FILE, MANIFEST_FILE, ExportFailed, ExportInterrupted
from worker.export.manifest import ClassThresholds
from worker.export.variants import CALIBRATION_IMAGES as VARIANT_CALIBRATION_IMAGES
from worker.export.variants import points
from worker.ingest.fetch import FetchLimits, fetch, open_source
from worker.ingest.source import IngestError
from worker.settings import WorkerSettings
from worker.tasks import task_for
from worker.webhooks import WebhookSender

log = logging.getLogger("aitrainer.job")
DATASET_REPORT_FILE = "dataset_report.json"  # beside the model files; the status links it
# The row's files key of metrics.json: linked from the first epoch on, delivered at the end.
METRICS_KEY = "metrics"

CHECKPOINT_BLOB = "checkpoint_last.pt"  # the name it had before claims had blobs of their own
EXPORT_CHECK_IMAGES = 32  # images each export is compared with PyTorch on


class LostJob(Exception):
    """Another worker holds the job now, or it ended elsewhere: stop touching it."""


class Outcome(enum.Enum):
    FINISHED = "finished"  # the row reached SUCCESS, FAILED or CANCELLED: delete the message
    PAUSED = "paused"  # warm stop: the row waits for a worker; make the message visible
    LOST = "lost"  # someone else owns the job, or its lease is gone: leave the message alone
    RETRY = "retry"  # a failed attempt with attempts left: the message returns after a delay
    POISONED = "poisoned"  # the last attempt failed: the message goes to the poison queue


class JobFlags:
    """What the worker's heartbeat learns while the training runs."""

    def __init__(self, stop: threading.Event, claim_token: str | None = None) -> None:
        self.stop = stop  # warm stop asked (SIGTERM)
        self.claim_token = claim_token  # the claim the job runs under
        self.cancelled = False  # the user asked to cancel
        self.timed_out = False  # past AITRAINER_MAX_WALL_SECONDS
        # The message's lease was lost (received again elsewhere) or the row's claim moved
        # on: leave at the next step, touching nothing.
        self.lost = False

    def interrupt_training(self) -> bool:
        return self.cancelled or self.timed_out or self.lost


class Job:
    """Runs one training for the worker that claimed its row."""

    def __init__(
        self,
        row: TrainingRow,
        secrets: dict[str, str],
        settings: WorkerSettings,
        jobs: JobsTable,
        artifacts: ArtifactStore,
        flags: JobFlags,
        redact: Callable[[str], str],
        work_dir: Path,
    ) -> None:
        assert row.claim_token is not None, "a job runs under a claim"
        self.row = row
        self.claim_token = row.claim_token
        self.work_dir = work_dir
        self.secrets = secrets
        self.settings = settings
        self.jobs = jobs
        self.artifacts = artifacts
        self.flags = flags
        self.redact = redact
        self.task = task_for(row.params.model_type)
        resume = resume_prefix(row.profile_id, row.project_name)
        # Each checkpoint gets a new name under the claim's folder (<claim>/<n>.pt), so a
        # blob the row names is never rewritten, not even by its own worker after losing
        # the job between its claim check and its upload.
        self.checkpoint_folder = f"{resume}{self.claim_token}/"
        # Before claims had blobs of their own, one blob served every attempt.
        self.legacy_checkpoint_blob = resume + CHECKPOINT_BLOB
        self.delivery_prefix = delivery_prefix(row.profile_id, row.project_name, self.claim_token)
        self.webhooks = webhook_sender(settings, row)

    @property
    def key(self) -> str:
        return job_key(self.row)

    # -- row writes ---------------------------------------------------------------------

    def update(self, change: Callable[[TrainingRow], None], event: str | None = None) -> None:
        """Apply `change` to the stored row if this worker still owns it; send the webhook."""

        def apply(row: TrainingRow) -> None:
            self._check_claim_of(row)
            old = row.state
            change(row)
            if not old.can_move_to(row.state):
                raise RuntimeError(f"job {self.key}: {old} → {row.state} moves backwards")
            row.lastupdate = utcnow()
            if event:
                row.events += 1
            if old != row.state:
                log.info("job %s: %s → %s", self.key, old.value, row.state.value)

        try:
            self.row, _ = self.jobs.modify(self.row.profile_id, self.row.project_name, apply)
        except TrainingNotFound as error:  # deleted (cancelled, then DELETE) while we ran it
            raise LostJob(self.key) from error
        if event:
            status = StatusResponse.from_row(self.row).model_dump(mode="json")
            self.webhooks.send(event, self.row.events, status)

    def _check_claim_of(self, row: TrainingRow) -> None:
        holder = (row.worker_id, row.claim_token)
        if holder != (self.settings.worker_id, self.claim_token) or row.state.finished:
            raise LostJob(self.key) from None

    def check_claim(self) -> None:
        """Raise LostJob unless the stored row is still this claim's (before any upload)."""
        if self.flags.lost:
            raise LostJob(self.key) from None
        found = self.jobs.get(self.row.profile_id, self.row.project_name)
        if found is None:
            raise LostJob(self.key) from None
        self._check_claim_of(found[0])

    def upload(self, path: Path, blob: str) -> None:
        """Upload one file, only while the job is still this claim's."""
        self.check_claim()
        self.artifacts.upload_file(path, blob)

    def advance(self, state: State, message: str, event: bool = True) -> None:
        """Move to `state` (never backwards: a resumed job stays where it was) and say why;
        event=False leaves the state_changed webhook to a later update."""

        def change(row: TrainingRow) -> None:
            moved = row.state.can_move_to(state) and row.state != state
            if moved:
                row.state = state
            row.message = message

        before = self.row.state
        moves = before.can_move_to(state) and before != state
        self.update(change, "state_changed" if moves and event else None)

    def finish(self, state: State, message: str) -> Outcome:
        def change(row: TrainingRow) -> None:
            row.state = state
            row.message = message
            row.worker_id = None
            if state == State.FAILED:
                row.last_error = message

        self.update(change, "state_changed")
        return Outcome.FINISHED

    # -- the pipeline -------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run to an end state, a pause (warm stop) or the discovery that the job moved on."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        workspace = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_dir))
        try:
            return self._run(workspace)
        except LostJob:
            if self.flags.lost:  # the lease went first: the claim may still be ours
                return self.leave("its queue message was received by another worker")
            log.warning("job %s: taken over or ended elsewhere; leaving it", self.key)
            return Outcome.LOST
        except (
            IngestError,
            DatasetError,
            WeightsMissingError,
            TrainingDiverged,
        ) as error:
            text = self.redact(str(error)).replace(str(workspace / "data"), "dataset")
            return self.finish(State.FAILED, text)
        except ClassesChanged as error:  # changed while it waited to resume: no retry helps
            return self.finish(
                State.FAILED,
                f"cannot resume after epoch {self.row.current_epoch}: {error}; delete the "
                "training and start it again to train on the dataset as it is now",
            )
        except torch.cuda.OutOfMemoryError:
            params, first = self.row.params, self.row.out_of_memory_batch_size
            again = f" (after a restart at half of batch_size {first})" if first else ""
            return self.finish(
                State.FAILED,
                f"the GPU ran out of memory at batch_size {params.batch_size} and image_size "
                f"{params.image_size}{again}; try a smaller batch_size or image_size",
            )
        finally:
            # Customers' photos can be health data: nothing outlives the job on local disk.
            shutil.rmtree(workspace, ignore_errors=True)
            self.webhooks.close()

    def _run(self, workspace: Path) -> Outcome:
        self.out_dir = workspace / "out"
        checkpoint = self._download_checkpoint(workspace)
        resuming = checkpoint is not None
        resume_note = f"resuming from epoch {self.row.current_epoch}: " if resuming else ""
        location = self.row.dataset
        self.advance(State.DOWNLOADING, f"{resume_note}downloading the dataset from {location.uri}")
        limits = FetchLimits(
            max_bytes=self.settings.max_dataset_bytes,
            max_files=self.settings.max_images,
            max_zip_ratio=self.settings.max_zip_ratio,
            concurrency=self.settings.download_concurrency,
        )
        started = time.monotonic()
        if location.storage_type == "azure":  # the API checked it too; a queue is no border
            problem = connection_string_problem(
                self.secrets["azure_connection_string"], **self.settings.dataset_rules
            )
            if problem:
                raise IngestError(problem)
        source = open_source(location, self.secrets, limits.concurrency)
        root, fetched = fetch(source, location.folder, location.zipped, workspace, limits)
        downloaded = (
            f"{resume_note}downloaded {fetched} bytes in {time.monotonic() - started:.1f} s: "
            + self.task.describe_dataset(root)
        )
        config = self._config()
        # DOWNLOADED without its event yet: the event carries what the check finds.
        # Announced once per job: by the first claim whose check got through (a claim that
        # died during its check left the row DOWNLOADED without a report).
        before = self.row.state
        announce = DATASET_REPORT_KEY not in self.row.files and before.can_move_to(State.DOWNLOADED)
        self.advance(State.DOWNLOADED, f"{downloaded}; checking every image", event=False)
        report = self.task.check_dataset(root, config)
        self._publish_report(report, f"{downloaded}; {report.summary()}", announce)
        if report.errors:
            raise DatasetError("; ".join(report.errors))
        if self.flags.stop.is_set():
            return self.pause()
        params = self.row.params
        first = self.row.current_epoch + 1
        self.advance(State.RUNNING, f"{resume_note}training epoch {first}/{params.epochs}")
        try:
            result = self._train(root, config, checkpoint)
        except TrainingInterrupted:
            return self.pause()
        except TrainingCancelled:
            return self._stopped(
                f"at epoch {self.row.current_epoch}", f"during epoch {self.row.current_epoch + 1}"
            )
        return self._deliver(result, root)

    def _stopped(self, timed_out_when: str, cancelled_when: str) -> Outcome:
        """The end of a job its flags interrupted: the claim lost (leave), past the wall-time
        limit (FAILED) or cancelled (CANCELLED); the phrases say when."""
        if self.flags.lost:
            raise LostJob(self.key) from None
        if self.flags.timed_out:
            return self.finish(
                State.FAILED,
                f"the job ran past the wall-time limit of {self.settings.max_wall_seconds} s "
                f"(AITRAINER_MAX_WALL_SECONDS) {timed_out_when}",
            )
        return self.finish(State.CANCELLED, f"cancelled {cancelled_when}")

    def _train(self, root: Path, config: TrainConfig, checkpoint: Path | None) -> TrainResult:
        """fit, restarted once from epoch 1 at half the batch size (the learning rate as
        asked) when the GPU runs out of memory; a second time, or when half is below the
        task's smallest batch, the error goes up."""
        while True:
            try:
                return fit(
                    self.task,
                    root,
                    self.out_dir,
                    config,
                    on_epoch=self._epoch_done,
                    resume_from=checkpoint,
                    cancelled=self.flags.interrupt_training,
                    stop_after_epoch=self.flags.stop.is_set,
                    on_checkpoint=self._step_checkpoint,
                    on_fresh_start=self._resume_refused,
                )
            except torch.cuda.OutOfMemoryError:
                smaller = halved_batch_size(config.batch_size, config.task)
                if self.row.out_of_memory_batch_size is not None or smaller is None:
                    raise
            # Out of the except block, whose traceback holds the failed run's frames (model,
            # optimiser, activations); a new task drops the old one's cache (on the GPU when
            # it fitted), so the restart's cache placement sees the memory free again.
            log.warning(
                "job %s: out of GPU memory at batch_size %d; restarting at %d",
                self.key,
                config.batch_size,
                smaller,
            )
            self.task = task_for(self.row.params.model_type)
            gc.collect()
            torch.cuda.empty_cache()
            self._restart_at(smaller)
            config = replace(config, batch_size=smaller)
            checkpoint = None  # its epochs were trained at the other batch size
            shutil.rmtree(self.out_dir, ignore_errors=True)

    def _restart_at(self, batch_size: int) -> None:
        """Record the restart in the row: the new batch size in its parameters, the reason
        in its message, progress back to none and no checkpoint to resume."""

        def change(row: TrainingRow) -> None:
            row.message = (
                f"the GPU ran out of memory at batch_size {row.params.batch_size} and "
                f"image_size {row.params.image_size}: training again from epoch 1 at "
                f"batch_size {batch_size}, the learning rate as asked"
            )
            row.out_of_memory_batch_size = row.params.batch_size
            row.params = row.params.model_copy(update={"batch_size": batch_size})

        self._start_over(change)

    def _resume_refused(self, why: str) -> None:
        """fit could not resume the checkpoint (why) and trains from epoch 1: say so."""

        def change(row: TrainingRow) -> None:
            row.message = (
                f"{why}: the checkpoint of epoch {row.current_epoch} cannot continue; "
                f"training again from epoch 1/{row.params.epochs}"
            )

        self._start_over(change)

    def _start_over(self, change: Callable[[TrainingRow], None]) -> None:
        """Commit `change` with the progress back to none and no checkpoint to resume, then
        delete the checkpoint the row named."""
        previous = self.row.checkpoint_blob

        def reset(row: TrainingRow) -> None:
            change(row)
            row.current_epoch = 0
            row.loss = row.accuracy = row.last_epoch_duration_seconds = None
            row.checkpoint_blob = None
            row.files = without_metrics(row.files)  # the epochs it drew are gone with them

        self.update(reset)
        if previous is not None:
            try:
                self.artifacts.delete(previous)
            except Exception:  # a leftover blob costs storage only; the prefix's rule expires it
                log.warning("job %s: could not delete the checkpoint before the restart", self.key)

    def _config(self) -> TrainConfig:
        """The run's TrainConfig: the row's request, the worker's settings."""
        params = self.row.params
        assert params.architecture is not None  # the contract sets the default
        return TrainConfig(
            epochs=params.epochs,
            learning_rate=params.learning_rate,
            image_size=params.image_size,
            batch_size=params.batch_size,
            step_size=params.step_size,
            gamma=params.gamma,
            architecture=params.architecture,
            pretrained=self.settings.pretrained,
            weights_dir=self.settings.weights_dir,
            device=self.settings.device,
            precision=self.settings.precision,
            compile_backend=self.settings.compile_backend,
            jpeg_decoder=self.settings.jpeg_decoder,
            cache_bytes=self.settings.cache_bytes,
            checkpoint_seconds=self.settings.checkpoint_seconds,
            task=params.model_type,
            augmentation=params.augmentation,
            horizontal_flip=params.horizontal_flip,
            patience=params.patience,
            class_weighting=params.class_weighting,
            test_fraction=params.test_fraction,
            threshold_precision=params.threshold_precision,
            leakage=params.leakage,
        )

    def _publish_report(self, report: DatasetReport, message: str, announce: bool) -> None:
        """Upload dataset_report.json, link it from the row, say what the check found."""
        path = self.out_dir / DATASET_REPORT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.as_json(), indent=1, ensure_ascii=False))
        blob = self.delivery_prefix + DATASET_REPORT_FILE
        self.upload(path, blob)

        def change(row: TrainingRow) -> None:
            row.message = message
            # An earlier claim's metrics.json is not this claim's progress: unlinked until
            # this claim's first epoch links its own, so the row never names two claims.
            row.files = {**without_metrics(row.files), DATASET_REPORT_KEY: blob}

        # The DOWNLOADED event, unless this job had announced DOWNLOADED (or more) before.
        self.update(change, "state_changed" if announce else None)
        self._delete_earlier_progress()

    def _delete_earlier_progress(self) -> None:
        """Delete what claims that lost this job (to a lease expiry, a kill) uploaded before
        delivering, their dataset report and metrics.json: theirs alone, named by no row."""
        runs = training_prefix(self.row.profile_id, self.row.project_name) + RUNS_FOLDER
        progress = ("/" + DATASET_REPORT_FILE, "/" + METRICS_FILE)
        try:
            for name in self.artifacts.list(runs):
                theirs = not name.startswith(self.delivery_prefix)
                if theirs and name.endswith(progress):
                    self.artifacts.delete(name)
        except Exception:  # a leftover file costs storage only; DELETE removes it with the rest
            log.warning("job %s: could not delete earlier claims' progress files", self.key)

    def _download_checkpoint(self, workspace: Path) -> Path | None:
        blob = self.row.checkpoint_blob
        if blob is None and self.row.current_epoch > 0:
            blob = self.legacy_checkpoint_blob
        if blob is None or not self.artifacts.exists(blob):
            return None
        path = workspace / "resume" / CHECKPOINT_BLOB
        path.parent.mkdir(parents=True)
        self.artifacts.download_file(blob, path)
        return path

    def _save_checkpoint(self, change: Callable[[TrainingRow], None], event: str | None) -> None:
        """Upload checkpoint_last.pt to this claim's blob, then commit it with `change`.

        Upload first: a row that names a checkpoint promises it exists. The blob is this
        claim's own, so a worker that lost the job cannot overwrite what the row names.
        """
        number = self.row.checkpoints + 1
        blob = f"{self.checkpoint_folder}{number}.pt"
        self.upload(self.out_dir / CHECKPOINT_LAST, blob)
        previous = self.row.checkpoint_blob

        def commit(row: TrainingRow) -> None:
            change(row)
            row.checkpoints = number
            row.checkpoint_blob = blob

        self.update(commit, event)
        if previous is not None:  # replaced now; nobody resumes from it any more
            try:
                self.artifacts.delete(previous)
            except Exception:  # a leftover blob costs storage only; the prefix's rule expires it
                log.warning("job %s: could not delete the earlier checkpoint", self.key)

    def _step_checkpoint(self, saved: StepCheckpoint) -> None:
        def change(row: TrainingRow) -> None:
            row.message = (
                f"epoch {saved.epoch}/{row.params.epochs}: {saved.step} of {saved.steps} "
                "batches trained (checkpoint saved)"
            )

        self._save_checkpoint(change, None)

    def _epoch_done(self, report: EpochReport) -> None:
        # metrics.json so far, linked while the training runs (the web page draws its curves
        # from it); this claim's own blob, as the delivered one is.
        metrics_blob = self.delivery_prefix + METRICS_FILE
        self.upload(self.out_dir / METRICS_FILE, metrics_blob)

        def change(row: TrainingRow) -> None:
            row.files = {**row.files, METRICS_KEY: metrics_blob}
            row.current_epoch = report.epoch
            row.loss = report.train_loss
            row.accuracy = report.val_accuracy
            row.last_epoch_duration_seconds = round(report.duration_s, 3)
            row.message = (
                f"epoch {report.epoch}/{report.epochs}: loss {report.train_loss:.4f}, "
                f"validation {self.task.score_name} {report.val_accuracy:.1%}, "
                f"{report.images_per_s:.0f} images/s"
            )
            if row.out_of_memory_batch_size is not None:
                row.message += f" ({self._smaller_batch_note()})"

        self._save_checkpoint(change, "epoch_completed")

    def _smaller_batch_note(self) -> str:
        return (
            f"batch_size {self.row.params.batch_size}: the GPU ran out of memory at "
            f"{self.row.out_of_memory_batch_size}"
        )

    def pause(self) -> Outcome:
        def change(row: TrainingRow) -> None:
            row.worker_id = None
            row.message = f"paused after epoch {row.current_epoch} (worker stopping); will resume"

        self.update(change)
        return Outcome.PAUSED

    def leave(self, why: str) -> Outcome:
        """Give the job back without counting an attempt (if the claim is still ours)."""
        log.warning("job %s: %s; leaving it for another worker", self.key, why)

        def change(row: TrainingRow) -> None:
            row.worker_id = None
            row.message = f"{why}; another worker resumes it from epoch {row.current_epoch}"

        with contextlib.suppress(LostJob):
            self.update(change)
        return Outcome.LOST

    def _deliver(self, result: TrainResult, root: Path) -> Outcome:
        params = self.row.params
        formats = params.export
        variants = [name for name in params.export_precision if name != "fp32"]
        also = f" (and their {', '.join(variants)} variants)" if variants else ""
        self.advance(State.EXPORTING, f"exporting {', '.join(formats)}{also} and checking each")
        model, class_names, config = self.task.load_best(
            result.checkpoint_best, self.settings.weights_dir
        )
        images, check_files = self.task.export_images(root, config, EXPORT_CHECK_IMAGES)
        # Only what the task's exporter takes: the stored files (a raw-file check), variants.
        export_arguments: dict[str, Any] = {}
        if check_files:
            export_arguments["check_files"] = check_files
        if variants:  # scored on the run's own validation split
            export_arguments |= {
                "precisions": params.export_precision,
                "tolerance": params.export_tolerance,
                "variant_data": lambda: self.task.variant_data(VARIANT_CALIBRATION_IMAGES),
            }
        export_dir = self.out_dir / "export"
        export_dir.mkdir()
        failure = None
        try:
            manifest = self.task.exporter(
                model,
                list(class_names),
                config.image_size,
                config.architecture,
                formats,
                images,
                export_dir,
                metrics=report_summary(result),
                model_version=f"{self.key}@{utcnow().strftime('%Y%m%dT%H%M%SZ')}",
                class_thresholds=shipped_thresholds(result, self.row.params.threshold_precision),
                interrupted=self.flags.interrupt_training,
                **export_arguments,
            )
        except ExportFailed as error:
            manifest, failure = error.manifest, str(error)
        except ExportInterrupted as stop:  # nothing uploaded: the row keeps no export
            done = f" ({', '.join(stop.done)} done, none delivered)" if stop.done else ""
            return self._stopped(f"while exporting{done}", f"while exporting{done}")
        if manifest.precisions is not None:  # metrics.json holds the table too
            measured = json.loads(result.metrics_path.read_text())
            measured["export_precisions"] = manifest.precisions.model_dump(mode="json")
            write_json(result.metrics_path, measured)
        prefix = self.delivery_prefix
        extras = {
            METRICS_KEY: (result.metrics_path, METRICS_FILE),
            "checkpoint": (result.checkpoint_best, "checkpoints/checkpoint_best.pt"),
        }
        extras |= {name: (path, f"plots/{name}.png") for name, path in result.plots.items()}
        uploads = [(path, blob) for path, blob in extras.values()]
        # Upload what exists even after a failure: the formats that passed stay downloadable.
        # The manifest (upload_names' last) goes last: it names every other file.
        uploads += [(export_dir / name, name) for name in manifest.upload_names()]
        assert uploads[-1][1] == MANIFEST_FILE
        for path, blob in uploads:
            self.upload(path, prefix + blob)
        exports = {fmt: prefix + name for fmt in formats if (name := manifest.model_file(fmt))}
        exports |= {key: prefix + name for key, name in manifest.variant_files().items()}
        files = {
            "manifest": MANIFEST_FILE,
            "labels": LABELS_FILE,
            DATASET_REPORT_KEY: DATASET_REPORT_FILE,
        }
        files |= {key: blob for key, (_, blob) in extras.items()}
        # A format's companions (TorchScript's plain state_dict) are downloadable too.
        for result_of_format in manifest.formats.values():
            if result_of_format.status == "passed":
                for companion in result_of_format.files[1:]:
                    files[companion.rsplit(".", 1)[0]] = companion

        def change(row: TrainingRow) -> None:
            row.exports = exports
            row.files = {key: prefix + blob for key, blob in files.items()}
            row.accuracy = result.best_val_accuracy  # the delivered model is the best epoch's
            if result.test_report is not None:
                row.test_accuracy = result.test_report.accuracy

        self.update(change)
        # Again after the commit: a claim paused between its claim check and an upload may
        # have written one more file since this claim's report.
        self._delete_earlier_progress()
        if failure:
            return self.finish(State.FAILED, f"{failure}; the other files can be downloaded")
        notes = [
            f"best validation {self.task.score_name} {result.best_val_accuracy:.1%} "
            f"at epoch {result.best_epoch}",
        ]
        if result.test_report is not None:
            notes.append(
                f"test {self.task.score_name} {result.test_report.accuracy:.1%} on "
                f"{plural(result.test_images, 'held-out image')}"
            )
        notes.append(f"exported {', '.join(formats)}, each checked against the PyTorch model")
        if manifest.variant_files():
            notes.append(
                f"{', '.join(manifest.variant_files())} within "
                f"{points(params.export_tolerance)} of the float32 validation accuracy"
            )
        for key, why in manifest.variants_not_delivered().items():
            notes.append(f"{key} not delivered: {why}")
        if result.skipped:
            notes.append(f"{plural(result.skipped, self.task.skipped_noun)} skipped")
        if not result.pretrained:
            notes.append("trained from scratch (no ImageNet weights in the cache)")
        if self.row.out_of_memory_batch_size is not None:
            notes.append(self._smaller_batch_note())
        trained = len(result.history)
        if result.stopped_early:
            message = (
                f"stopped early after epoch {trained} of {self.row.params.epochs}: no better "
                f"validation {self.task.score_name} for {self.row.params.patience} epochs "
                "(patience); "
            )
        else:
            message = f"trained {trained} epochs; "
        message += "; ".join(notes)
        floor = self.task.learned_floor(len(result.class_names))
        if result.best_val_accuracy < floor:
            message = did_not_learn(self.task.score_name, result, floor) + "; " + message
        return self.finish(State.SUCCESS, message)


def halved_batch_size(batch_size: int, task: str) -> int | None:
    """The batch size a run out of GPU memory restarts at: half, rounded down; None when
    that is below the task's smallest batch (a detector's batch norm needs two images)."""
    smallest = MIN_DETECTION_BATCH_SIZE if task == "detection" else MIN_BATCH_SIZE
    half = batch_size // 2
    return half if half >= smallest else None


def webhook_sender(settings: WorkerSettings, row: TrainingRow) -> WebhookSender:
    """One job's webhook deliveries, signed with its profile's own secret."""
    return WebhookSender(
        row.webhook_url,
        settings.tenant_webhook_secret(row.profile_id).encode(),
        allow_private=settings.webhook_allow_private,
        timeout=settings.webhook_timeout_seconds,
        retries=settings.webhook_retries,
    )


def did_not_learn(score_name: str, result: TrainResult, floor: float) -> str:
    """What a model that validates near chance tells its user, and what to change."""
    advice = ["a lower learning_rate", "more images per class"]
    if len(result.history) < MAX_EPOCHS:
        advice.insert(0, f"more epochs than {len(result.history)}")
    if not result.pretrained:
        advice.insert(-1, "ImageNet weights (the worker's weights cache)")
    return (
        f"the model did not learn: its best validation {score_name} "
        f"{result.best_val_accuracy:.1%} is below {floor:.1%}, little better than guessing; "
        f"try {', '.join(advice[:-1])} or {advice[-1]}"
    )


def report_summary(result: TrainResult) -> dict[str, Any]:
    """The metrics the manifest carries: best epoch, accuracy and per-class figures, and the
    test split's report (per class, confusion matrix) when the run had one."""
    return {
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy,
        "epochs_trained": len(result.history),
        "stopped_early": result.stopped_early,
        "train_images": result.train_images,
        "val_images": result.val_images,
        "test_images": result.test_images,
        "skipped_images": result.skipped,
        "pretrained": result.pretrained,
        "report": asdict(result.report),
        "test_report": asdict(result.test_report) if result.test_report is not None else None,
        "dataset": result.dataset_check,
    }


def shipped_thresholds(result: TrainResult, precision: float) -> ClassThresholds | None:
    """The classifier's per-class decision thresholds, as the manifest and files carry them."""
    thresholds = getattr(result.report, "class_thresholds", None)
    if thresholds is None:
        return None
    return ClassThresholds(
        target_precision=precision,
        thresholds=dict(zip(result.class_names, thresholds, strict=True)),
    )


def without_metrics(files: dict[str, str]) -> dict[str, str]:
    """A row's files with no metrics.json linked (progress that is no longer this run's)."""
    return {key: blob for key, blob in files.items() if key != METRICS_KEY}
