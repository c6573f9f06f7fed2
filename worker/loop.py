"""The worker loop: bootstrap → (receive → lease → run → delete)* → teardown.

A heartbeat thread keeps the worker row fresh, renews the current message's lease, and
reads the job's row for a cancel request. The first SIGTERM/SIGINT is a warm stop (the
current epoch finishes, its checkpoint is uploaded and the message returns to the queue),
the second a cold one (stop now; the lease lapses and another worker resumes).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from types import FrameType

import torch
from pydantic import ValidationError

from shared.contract import JobMessage, State, TrainingRow, utcnow
from shared.sealing import SealError, unseal
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable, TrainingNotFound
from shared.storage.queue import JobQueue, Lease
from shared.storage.workers import WorkersTable
from worker.job import Job, JobFlags, LostJob, Outcome
from worker.redaction import Redactor
from worker.settings import WorkerSettings

log = logging.getLogger("aitrainer.worker")


class ColdStop(BaseException):
    """Second signal: leave now. A BaseException so that no `except Exception` swallows it."""


def _gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        account = StorageAccount(settings)
        self.settings = settings
        self.id = settings.worker_id
        self.jobs = JobsTable(account.table(settings.trainings_table))
        self.queue = JobQueue(account.queue(settings.jobs_queue))
        self.poison = JobQueue(account.queue(settings.poison_queue))
        self.workers = WorkersTable(account.table(settings.workers_table))
        self.artifacts = account.artifacts()
        self.sealing_key = settings.sealing_key_bytes()
        self.gpu = _gpu_name()
        self.stop = threading.Event()
        self.lock = threading.Lock()  # guards lease, current and flags across threads
        self.lease: Lease | None = None
        self.current: tuple[str, str] | None = None
        self.flags: JobFlags | None = None
        self.job_started = 0.0
        self.redactor = Redactor()

    # -- lifecycle ----------------------------------------------------------------------

    def run(self, once: bool = False) -> None:
        """Take jobs until stopped (or, with `once`, at most one job)."""
        self.bootstrap()
        pulse = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        pulse.start()
        idle = self.settings.poll_min_seconds
        try:
            while not self.stop.is_set():
                lease = self.queue.receive(self.settings.lease_seconds)
                if lease is None:
                    if once:
                        break
                    self.stop.wait(idle)
                    idle = min(idle * 2, self.settings.poll_max_seconds)
                    continue
                idle = self.settings.poll_min_seconds
                self.handle(lease)
                if once:
                    break
        finally:
            self.teardown()

    def bootstrap(self) -> None:
        self.workers.heartbeat(self.id, self.gpu, None)
        logging.getLogger().addFilter(self.redactor)
        for handler in logging.getLogger().handlers:
            handler.addFilter(self.redactor)
        log.info("worker %s up on %s", self.id, self.gpu)

    def teardown(self) -> None:
        self.stop.set()
        try:
            self.workers.remove(self.id)
        except Exception:  # a dying worker's row simply goes stale
            log.warning("worker %s: could not remove its heartbeat row", self.id)
        log.info("worker %s down", self.id)

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.stop.is_set():
                log.warning("worker %s: second signal, stopping now", self.id)
                raise ColdStop
            log.info("worker %s: stopping after the current epoch (again to stop now)", self.id)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- one message --------------------------------------------------------------------

    def handle(self, lease: Lease) -> None:
        try:
            message = JobMessage.model_validate_json(lease.content)
        except ValidationError:
            log.error(
                "message %s is not a job message; moving it to the poison queue", lease.message_id
            )
            self._to_poison(lease)
            return
        key = f"{message.profile_id}/{message.project_name}"
        found = self.jobs.get(message.profile_id, message.project_name)
        if found is None or found[0].state.finished:
            log.info(
                "job %s: %s; dropping its message",
                key,
                "deleted" if found is None else f"already {found[0].state.value}",
            )
            self.queue.delete(lease)
            return
        try:
            secrets = unseal(
                message.sealed_credentials,
                self.sealing_key,
                message.profile_id,
                message.project_name,
            )
        except SealError:
            self._give_up(
                lease,
                message,
                "the job's credentials could not be opened (the sealing key changed?)",
            )
            return
        try:
            row = self._claim(message)
        except (LostJob, TrainingNotFound):
            self.queue.delete(lease)
            return
        if row.attempt >= self.settings.max_attempts:
            self._give_up(
                lease, message, f"gave up after {row.attempt} failed attempts: {row.last_error}"
            )
            return
        self._run(lease, row, secrets)

    def _claim(self, message: JobMessage) -> TrainingRow:
        """Own the row. An earlier holder that vanished without progress counts as a failure."""

        def claim(row: TrainingRow) -> None:
            if row.state.finished:
                raise LostJob(message.project_name)
            crashed = row.worker_id is not None and row.current_epoch <= row.claimed_epoch
            if crashed:
                row.attempt += 1
                row.last_error = f"worker {row.worker_id} stopped without progress"
            row.worker_id = self.id
            row.claimed_epoch = row.current_epoch
            row.lastupdate = utcnow()

        row, _ = self.jobs.modify(message.profile_id, message.project_name, claim)
        return row

    def _run(self, lease: Lease, row: TrainingRow, secrets: dict[str, str]) -> None:
        key = f"{row.profile_id}/{row.project_name}"
        flags = JobFlags(self.stop)
        with self.lock:
            self.lease, self.current, self.flags = lease, (row.profile_id, row.project_name), flags
            self.job_started = time.monotonic()
        self.redactor.protect(secrets)
        job = Job(
            row, secrets, self.settings, self.jobs, self.artifacts, flags, self.redactor.redact
        )
        try:
            try:
                outcome = job.run()
            except Exception as error:  # any other failure: retry, then give up
                reason = self.redactor.redact(f"{type(error).__name__}: {error}")
                log.exception("job %s: attempt failed: %s", key, reason)
                outcome = self._failed_attempt(job, reason)
        finally:
            with self.lock:  # no renewal is in flight: from here the lease is ours alone
                lease = self.lease or lease  # the heartbeat may have renewed it
                self.lease, self.current, self.flags = None, None, None
            self.redactor.protect({})
        if outcome == Outcome.FINISHED:
            self.queue.delete(lease)
        elif outcome == Outcome.PAUSED:
            self.queue.release(lease)
        elif outcome == Outcome.RETRY:
            self.queue.extend(lease, self.settings.retry_delay_seconds)
        elif outcome == Outcome.POISONED:
            self.poison.send(lease.content)
            self.queue.delete(lease)
        log.info("job %s: %s", key, outcome.value)

    def _failed_attempt(self, job: Job, reason: str) -> Outcome:
        """Count a failed attempt in the row; the last one allowed ends the job FAILED."""
        limit = self.settings.max_attempts
        exhausted = job.row.attempt + 1 >= limit

        def count(row: TrainingRow) -> None:
            row.attempt += 1
            row.last_error = reason
            row.worker_id = None
            if exhausted:
                row.state = State.FAILED
                row.message = f"gave up after {row.attempt} failed attempts: {reason}"
            else:
                row.message = (
                    f"attempt {row.attempt} of {limit} failed ({reason}); retrying in "
                    f"{self.settings.retry_delay_seconds} s"
                )

        try:
            job.update(count, "state_changed" if exhausted else None)
        except LostJob:
            return Outcome.LOST
        return Outcome.POISONED if exhausted else Outcome.RETRY

    def _give_up(self, lease: Lease, message: JobMessage, reason: str) -> None:
        """End a job that cannot run at all: row FAILED, message to the poison queue."""
        log.error("job %s/%s: %s", message.profile_id, message.project_name, reason)

        def fail(row: TrainingRow) -> None:
            if row.state.finished:
                raise LostJob(row.project_name)
            row.state, row.message, row.last_error = State.FAILED, reason, reason
            row.worker_id = None
            row.lastupdate = utcnow()

        with contextlib.suppress(LostJob, TrainingNotFound):
            self.jobs.modify(message.profile_id, message.project_name, fail)
        self.poison.send(lease.content)
        self.queue.delete(lease)

    def _to_poison(self, lease: Lease) -> None:
        self.poison.send(lease.content)
        self.queue.delete(lease)

    # -- heartbeat ----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        # Beat until stopped, and after a warm stop for as long as the last epoch runs: its
        # lease must stay alive until the checkpoint is uploaded and the message released.
        while True:
            time.sleep(self.settings.heartbeat_seconds)
            if self.stop.is_set() and self.current is None:
                return
            try:
                self._beat()
            except Exception:  # a missed beat is retried at the next one
                log.warning("worker %s: heartbeat failed", self.id, exc_info=True)

    def _beat(self) -> None:
        with self.lock:
            current, flags = self.current, self.flags
        self.workers.heartbeat(self.id, self.gpu, "/".join(current) if current else None)
        if current is None or flags is None:
            return
        # Renewed under the lock the job's end takes the lease under: a renewal changes the
        # pop receipt, so one racing the final delete or release would make it fail.
        with self.lock:
            if self.lease is None:
                return
            self.lease = self.queue.extend(self.lease, self.settings.lease_seconds)
        found = self.jobs.get(*current)
        if found is not None and (found[0].cancel_requested or found[0].state.finished):
            flags.cancelled = True
        if time.monotonic() - self.job_started > self.settings.max_wall_seconds:
            flags.timed_out = True
