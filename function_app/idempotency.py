"""`Idempotency-Key` on /starttraining/: a retried start gets the first answer, not a 409.

The same key with the same body within 24 h answers the first 202 again (no second
training); with another body, 422. Keys belong to the token that sent them. Only a start
that queued a training is remembered: a refused one may be retried as it is.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import AzureError
from fastapi.responses import JSONResponse

from shared.storage.idempotency import IdempotencyKeys, KeyTaken, body_digest

from .errors import ApiError

log = logging.getLogger("aitrainer.api")

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"[!-~]{1,255}")  # visible ASCII, as HTTP header values allow
KEY_RULE = f"{HEADER} must be 1 to 255 visible ASCII characters"
# A reservation without an answer this old belongs to a request that died (the host
# stopped it): a retry takes it over. Starts answer in seconds.
ABANDONED_AFTER = timedelta(seconds=60)

Answer = Callable[[], JSONResponse]
Refusal = Callable[[int, str], JSONResponse]


def start_once(
    keys: IdempotencyKeys,
    owner: str,
    key: str,
    body: bytes,
    start: Answer,
    refuse: Refusal,
) -> JSONResponse:
    """`start()`'s answer, or the answer the first start with this key and body got."""
    if not KEY_PATTERN.fullmatch(key):
        raise ApiError(400, KEY_RULE)
    digest = body_digest(body)
    now = datetime.now(UTC)
    replacing = None
    found = keys.get(owner, key)
    if found is not None:
        record, etag = found
        if record.expired(now):
            replacing = etag
        elif record.digest != digest:
            return refuse(422, f"{HEADER} '{key}' was used with another body; use a new key")
        elif record.status is not None and record.response is not None:
            return JSONResponse(json.loads(record.response), record.status)
        elif now - record.created < ABANDONED_AFTER:
            return _in_progress(refuse)
        else:
            replacing = etag
    try:
        etag = keys.reserve(owner, key, digest, replacing)
    except KeyTaken:
        return _in_progress(refuse)
    try:
        answer = start()
    except Exception:
        _forget(keys, owner, key, etag)  # nothing started: a retry may use the key at once
        raise
    try:
        if answer.status_code == 202:
            keys.complete(owner, key, etag, answer.status_code, bytes(answer.body).decode())
        else:
            keys.release(owner, key, etag)
        keys.prune(owner, now)
    except AzureError as error:  # the answer stands (a queued training stays queued)
        log.warning("idempotency key bookkeeping failed: %s", type(error).__name__)
    return answer


def _forget(keys: IdempotencyKeys, owner: str, key: str, etag: str) -> None:
    try:
        keys.release(owner, key, etag)
    except AzureError as error:  # it expires as abandoned after ABANDONED_AFTER
        log.warning("idempotency key not released: %s", type(error).__name__)


def _in_progress(refuse: Refusal) -> JSONResponse:
    answer = refuse(409, f"a start with this {HEADER} is under way; retry in a few seconds")
    answer.headers["Retry-After"] = "2"
    return answer
