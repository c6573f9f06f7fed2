"""`GET /checkserver/`: whether storage answers and workers are there to take jobs."""

from __future__ import annotations

import logging
from typing import Literal

from azure.core.exceptions import AzureError
from fastapi.responses import JSONResponse

from shared.contract import CheckServerResponse, ErrorResponse

from ..deps import GrantDep, ServicesDep
from ..errors import STORAGE_DOWN
from . import SeedRouter

log = logging.getLogger("aitrainer.api")

router = SeedRouter()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _answer(result: Literal["Ok", "Failed"], message: str, status: int = 200) -> JSONResponse:
    body = CheckServerResponse(result=result, message=message)
    return JSONResponse(body.model_dump(), status)


@router.get(
    "/checkserver/",
    response_model=CheckServerResponse,
    responses={503: {"model": CheckServerResponse}, 401: {"model": ErrorResponse}},
)
def check_server(services: ServicesDep, grant: GrantDep) -> JSONResponse:
    """Ok when the table and queue answer and a worker heartbeat is fresh.

    With `AITRAINER_REQUIRE_GPU` (the default outside dev), online workers that all train on
    the CPU are a failure too: a broken driver must not pass for a working service.

    With `AITRAINER_WORKER_MODE=on_demand` workers start per queued job, so zero online
    workers is the idle state and the answer is Ok as long as storage answers. Worker and
    queue counts are the whole service's: a token limited to some profiles gets the verdict
    without them (other tenants' load is not theirs to see).
    """
    try:
        workers = services.workers.online(services.settings.worker_fresh_seconds)
        waiting = services.queue.depth()
    except AzureError as error:
        log.warning("checkserver: storage error %s", type(error).__name__)
        return _answer("Failed", STORAGE_DOWN, 503)
    counts = f"{_count(len(workers), 'worker')} online, {_count(waiting, 'job')} waiting"
    if grant.profiles is not None:
        counts = "workers online" if workers else ""
    if services.settings.gpu_required and workers and all(w.device == "cpu" for w in workers):
        verdict = "every online worker trains on the CPU (AITRAINER_REQUIRE_GPU)"
        return _answer("Failed", "; ".join(filter(None, (verdict, counts))), 503)
    if services.settings.worker_mode == "on_demand":
        return _answer("Ok", "; ".join(filter(None, (counts, "workers start on demand"))))
    if workers:
        return _answer("Ok", counts)
    return _answer("Failed", "; ".join(filter(None, ("no worker online", counts))), 503)
