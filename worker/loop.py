"""The worker loop: bootstrap → (receive → claim → run → settle the message)* → teardown.

A heartbeat thread keeps the worker row fresh (it names the job being run: the holder rule
of worker/claim.py reads it), renews the current message's lease, and reads the job's row
for a cancel request or a lost claim. The first SIGTERM/SIGINT is a warm stop (the current
epoch finishes, its checkpoint is uploaded and the message returns to the queue), the
second a cold one (stop now; the lease lapses and another worker resumes). A storage error
around receiving, reading or settling a message is logged and retried with backoff: a
worker only exits when told to.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from azure.core.exceptions import AzureError, HttpResponseError
from pydantic import ValidationError

from shared.contract import JobMessage, State, StatusResponse, TrainingRow, utcnow
from shared.sealing import SealError, UnknownKey, unseal
from shared.storage.account import StorageAccount
from shared.storage.jobs import JobsTable, TrainingNotFound
from shared.storage.queue import JobQueue, Lease, LeaseLost
from shared.storage.workers import WorkersTable
from worker.claim import HeldElsewhere, Verdict, claim, verdict
from worker.engine.device import check_compile_backend, prepare_compute
from worker.job import Job, JobFlags, LostJob, Outcome, webhook_sender
from worker.redaction import Redactor
from worker.settings import WorkerSettings

log = logging.getLogger("aitrainer.worker")

# Backoff while our own storage fails: from poll_min_seconds, doubling up to this.
STORAGE_BACKOFF_MAX_SECONDS = 60.0


class ColdStop(BaseException):
    """Second signal: leave now. A BaseException so that no `except Exception` swallows it."""


def folder_name(worker_id: str) -> str:
    """A worker id as one safe folder name (never empty, `.` or `..`)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id)
    if name.strip(".") == "":
        name = "worker-" + hashlib.sha256(worker_id.encode()).hexdigest()[:12]
    return name


def storage_trouble(error: AzureError) -> str:
    """Our sentence for a storage failure: the error's kind and HTTP status, never the SDK's
    text (it can quote request URLs, headers and the service's XML body)."""
    status = error.status_code if isinstance(error, HttpResponseError) else None
    kind = type(error).__name__ + (f", HTTP {status}" if status else "")
    return f"a storage request failed ({kind})"


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        account = StorageAccount(
            settings,
            retries=settings.storage_retries,
            backoff_seconds=1.0,
            timeout_seconds=settings.storage_timeout_seconds,
        )
        self.settings = settings
        self.id = settings.worker_id
        self.jobs = JobsTable(account.table(settings.trainings_table))
        self.queue = JobQueue(account.queue(settings.jobs_queue))
        self.poison = JobQueue(account.queue(settings.poison_queue))
        self.workers = WorkersTable(account.table(settings.workers_table))
        self.artifacts = account.artifacts()
        self.sealing_ring = settings.sealing_ring()
        # This worker's own folder: at start-up it clears only that (others may be running).
        self.work_dir = settings.work_dir / folder_name(self.id)
        # Raises DeviceUnavailable before anything starts: told cuda without one, or a
        # precision the card lacks (worker/engine/device.py).
        self.compute = prepare_compute(settings.device, settings.precision)
        check_compile_backend(settings.compile_backend)
        self.stop = threading.Event()
        self.lock = threading.Lock()  # guards lease, current and flags across threads
        # Serialises heartbeat writes, each with the job it reads under it: a beat that read
        # "no job" must not land after the one that names the job just claimed.
        self.beat_lock = threading.Lock()
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
        idle = trouble = self.settings.poll_min_seconds
        try:
            while not self.stop.is_set():
                try:
                    lease = self.queue.receive(self.settings.lease_seconds)
                    if lease is not None:
                        self.handle(lease)
                except Exception as error:  # a worker exits only when told to
                    # The message (if any) returns when its lease lapses; nothing is lost.
                    log.warning(
                        "worker %s: %s; trying again in %.1f s",
                        self.id,
                        storage_trouble(error)
                        if isinstance(error, AzureError)
                        else f"{type(error).__name__} handling a message",
                        trouble,
                        exc_info=not isinstance(error, AzureError),
                    )
                    self.stop.wait(trouble)
                    trouble = min(trouble * 2, STORAGE_BACKOFF_MAX_SECONDS)
                    continue
                trouble = self.settings.poll_min_seconds
                if once:
                    break
                if lease is None:
                    self.stop.wait(idle)
                    idle = min(idle * 2, self.settings.poll_max_seconds)
                else:
                    idle = self.settings.poll_min_seconds
        finally:
            self.teardown()

    def bootstrap(self) -> None:
        # What a killed worker of this id left (customers' photos): nothing outlives a job.
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger().addFilter(self.redactor)
        for handler in logging.getLogger().handlers:
            handler.addFilter(self.redactor)
        delay = self.settings.poll_min_seconds
        while not self.stop.is_set():
            try:
                self._write_heartbeat()
                break
            except AzureError as error:
                log.warning("worker %s: cannot register: %s", self.id, storage_trouble(error))
                self.stop.wait(delay)
                delay = min(delay * 2, STORAGE_BACKOFF_MAX_SECONDS)
        log.info(
            "worker %s up on %s (%s, %s)",
            self.id,
            self.compute.device,
            self.compute.gpu,
            self.compute.precision,
        )

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
        with self.lock:
            self.lease, self.current = lease, (message.profile_id, message.project_name)
        try:
            # Our heartbeat names the job before our claim can be read: a worker that sees
            # the claim also sees a holder that works on it (worker/claim.py).
            self._write_heartbeat()
            self._handle(lease, message)
        finally:
            with self.lock:
                self.lease, self.current, self.flags = None, None, None

    def _handle(self, lease: Lease, message: JobMessage) -> None:
        key = f"{message.profile_id}/{message.project_name}"
        found = self.jobs.get(message.profile_id, message.project_name)
        if found is not None and found[0].job_id != message.job_id:
            # The training it was queued for was deleted; this name now runs another job.
            log.info("job %s: message of an earlier training of this name; dropping it", key)
            self._settle(self.queue.delete)
            return
        if found is None or found[0].state.finished:
            log.info(
                "job %s: %s; dropping its message",
                key,
                "deleted" if found is None else f"already {found[0].state.value}",
            )
            if found is not None and found[0].event_pending:
                self._send_pending_event(found[0])
            self._settle(self.queue.delete)
            return
        # Never claimed by anyone (a claim sets the token), yet delivered this often: no
        # worker gets far enough to start it. A claimed job's copies meet the holder rule.
        never_claimed = found[0].claim_token is None and found[0].state == State.PENDING
        if never_claimed and lease.dequeue_count > self.settings.max_deliveries:
            self._give_up(
                message,
                f"its queue message was delivered {lease.dequeue_count} times without a worker "
                "being able to start it",
            )
            return
        try:
            secrets = unseal(
                message.sealed_credentials,
                self.sealing_ring,
                message.profile_id,
                message.project_name,
                found[0].job_id,
            )
        except SealError as error:  # our own sentence: it names a key id, never a secret
            if isinstance(error, UnknownKey) and lease.dequeue_count < self.settings.max_deliveries:
                # Sealed by an API that already has a new key this worker has not: a rotation
                # under way (docs/deploy.md). A restarted worker will hold it; try again later.
                log.warning("job %s: %s; its message comes back later", key, error)
                delay = self.settings.retry_delay_seconds
                self._settle(lambda lease: self.queue.extend(lease, delay))
                return
            self._give_up(message, f"the job's credentials could not be opened: {error}")
            return
        try:
            row = self._claim(message, lease.message_id)
        except HeldElsewhere as held:
            if held.verdict == Verdict.DUPLICATE:
                log.info("job %s: %s; dropping this duplicate message", key, held)
                self._settle(self.queue.delete)
            else:  # its holder lost this lease and leaves at its next step: try again soon
                log.info("job %s: %s; its message comes back later", key, held)
                wait = max(1, round(2 * self.settings.heartbeat_seconds))
                self._settle(lambda lease: self.queue.extend(lease, wait))
            return
        except (LostJob, TrainingNotFound):
            self._settle(self.queue.delete)
            return
        if row.attempt >= self.settings.max_attempts:
            self._give_up(message, f"gave up after {row.attempt} failed attempts: {row.last_error}")
            return
        self._run(row, secrets)

    def _claim(self, message: JobMessage, message_id: str) -> TrainingRow:
        """Own the row, if the holder rule allows it (worker/claim.py)."""

        def change(row: TrainingRow) -> None:
            # Finished, or deleted and started again since this message was read: not ours.
            if row.state.finished or row.job_id != message.job_id:
                raise LostJob(message.project_name)
            holder = None
            if row.worker_id not in (None, self.id):
                holder = self.workers.get(row.worker_id)
            found = verdict(row, holder, self.id, message_id, self.settings.lease_seconds)
            if found != Verdict.CLAIM:
                raise HeldElsewhere(found, str(row.worker_id))
            claim(row, self.id, message_id)

        row, _ = self.jobs.modify(message.profile_id, message.project_name, change)
        return row

    def _run(self, row: TrainingRow, secrets: dict[str, str]) -> None:
        key = f"{row.profile_id}/{row.project_name}"
        flags = JobFlags(self.stop, row.claim_token)
        with self.lock:
            flags.lost = self.lease is None  # lost while reading and claiming the row
            self.flags = flags
            self.job_started = time.monotonic()
        self.redactor.protect(secrets)
        job = Job(
            row,
            secrets,
            self.settings,
            self.jobs,
            self.artifacts,
            flags,
            self.redactor.redact,
            self.work_dir,
        )
        try:
            try:
                outcome = job.run()
            except Exception as error:  # any other failure: retry, then give up
                # The SDK retried a storage failure already (AITRAINER_STORAGE_RETRIES); what
                # is left is a fault that outlived them, told in our words, not the SDK's.
                if isinstance(error, AzureError):
                    reason = storage_trouble(error)
                else:
                    reason = self.redactor.redact(f"{type(error).__name__}: {error}")
                log.exception("job %s: attempt failed: %s", key, reason)
                outcome = self._failed_attempt(job, reason)
        finally:
            self.redactor.protect({})
        delay = self.settings.retry_delay_seconds
        settle: dict[Outcome, Callable[[Lease], object]] = {
            Outcome.FINISHED: self.queue.delete,
            Outcome.PAUSED: self.queue.release,
            Outcome.RETRY: lambda lease: self.queue.extend(lease, delay),
            Outcome.POISONED: self._to_poison,
        }
        if outcome in settle:
            self._settle(settle[outcome])
        log.info("job %s: %s", key, outcome.value)

    def _settle(self, action: Callable[[Lease], object]) -> None:
        """Delete, release or delay the current message, if its lease is still ours."""
        with self.lock:  # no renewal is in flight: from here the lease is ours alone
            lease, self.lease = self.lease, None
        if lease is None:
            log.info("the message's lease was lost; another worker has it")
            return
        try:
            action(lease)
        except LeaseLost:
            log.info("message %s: its lease lapsed before it was settled", lease.message_id)

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

    def _give_up(self, message: JobMessage, reason: str) -> None:
        """End a job that cannot run at all: row FAILED (and its webhook), message to poison."""
        log.error("job %s/%s: %s", message.profile_id, message.project_name, reason)

        def fail(row: TrainingRow) -> None:
            if row.state.finished:
                raise LostJob(row.project_name)
            row.state, row.message, row.last_error = State.FAILED, reason, reason
            row.worker_id = None
            row.events += 1
            row.lastupdate = utcnow()

        try:
            row, _ = self.jobs.modify(message.profile_id, message.project_name, fail)
        except (LostJob, TrainingNotFound):
            pass
        else:
            self._send(row)
        self._settle(self._to_poison)

    def _send_pending_event(self, finished: TrainingRow) -> None:
        """Send the end a job reached without a worker (cancelled while queued)."""

        def take(row: TrainingRow) -> None:
            if not row.event_pending:
                raise LostJob(row.project_name)  # another copy of the message sent it
            row.event_pending = False
            row.events += 1

        try:
            row, _ = self.jobs.modify(finished.profile_id, finished.project_name, take)
        except (LostJob, TrainingNotFound):
            return
        self._send(row)

    def _send(self, row: TrainingRow) -> None:
        """The state_changed event a running job sends, for a job no worker ran."""
        sender = webhook_sender(self.settings, row)
        try:
            status = StatusResponse.from_row(row).model_dump(mode="json")
            sender.send("state_changed", row.events, status)
        finally:
            sender.close()

    def _to_poison(self, lease: Lease) -> None:
        self.poison.send(lease.content)
        try:
            self.queue.delete(lease)
        except LeaseLost:  # received again meanwhile: that copy meets the same end
            log.info("message %s: its lease lapsed before it was deleted", lease.message_id)

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
            except AzureError as error:  # a missed beat is retried at the next one
                log.warning("worker %s: heartbeat failed: %s", self.id, storage_trouble(error))
            except Exception:
                log.warning("worker %s: heartbeat failed", self.id, exc_info=True)

    def _write_heartbeat(self) -> tuple[str, str] | None:
        """Refresh our row in the workers table, naming the job we work on (returned)."""
        with self.beat_lock:
            with self.lock:
                current = self.current
            self.workers.heartbeat(
                self.id,
                self.compute.gpu,
                "/".join(current) if current else None,
                device=self.compute.device.type,
                precision=self.compute.precision,
            )
        return current

    def _beat(self) -> None:
        current = self._write_heartbeat()
        with self.lock:
            flags = self.flags
        if current is None:
            return
        # Renewed under the lock the job's end takes the lease under: a renewal changes the
        # pop receipt, so one racing the final delete or release would make it fail.
        with self.lock:
            if self.lease is not None:
                try:
                    self.lease = self.queue.extend(self.lease, self.settings.lease_seconds)
                except LeaseLost:
                    log.warning("job %s: its message's lease was lost", "/".join(current))
                    self.lease = None
                    if self.flags is not None:
                        self.flags.lost = True
        if flags is None:
            return
        found = self.jobs.get(*current)
        if found is not None:
            row = found[0]
            if row.cancel_requested or row.state.finished:
                flags.cancelled = True
            if row.claim_token != flags.claim_token:
                log.warning("job %s: its claim moved to %s", "/".join(current), row.worker_id)
                flags.lost = True
        if time.monotonic() - self.job_started > self.settings.max_wall_seconds:
            flags.timed_out = True
