"""What the routes talk to: the storage facades and keys, built once per app from its settings."""

from __future__ import annotations

from shared.storage.account import StorageAccount
from shared.storage.idempotency import IdempotencyKeys
from shared.storage.jobs import JobsTable
from shared.storage.queue import JobQueue
from shared.storage.workers import WorkersTable

from .auth import parse_tokens
from .settings import ApiSettings


class Services:
    """The app's settings, accepted tokens, storage facades and sealing keys."""

    def __init__(self, settings: ApiSettings) -> None:
        account = StorageAccount(settings, retries=1)
        self.settings = settings
        self.grants = parse_tokens(
            settings.api_tokens.get_secret_value() if settings.api_tokens else ""
        )
        self.jobs = JobsTable(account.table(settings.trainings_table))
        self.queue = JobQueue(account.queue(settings.jobs_queue))
        self.workers = WorkersTable(account.table(settings.workers_table))
        self.idempotency = IdempotencyKeys(account.table(settings.idempotency_table))
        self.artifacts = account.artifacts()
        self.sealing_ring = settings.sealing_ring()
