"""Follow a training to its end with a live progress bar (or plain lines when not a terminal).

The bar shows the state, epoch n/N, the last loss, the validation accuracy and an ETA from
the last epoch's duration; the server's message rides along.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from cli.client import ApiClient
from cli.config import DEFAULT_POLL_SECONDS, FOLLOW_OUTAGE_SECONDS
from cli.errors import CliError
from shared.contract import State, StatusResponse

MESSAGE_WIDTH = 70


def duration(seconds: float) -> str:
    """`0:07`, `12:30`, `1:02:03`."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_seconds(status: StatusResponse, now: datetime | None = None) -> float | None:
    """Seconds until the last epoch ends, from the last epoch's duration; None when unknown."""
    per_epoch = status.last_epoch_duration_seconds
    if status.result != State.RUNNING or not per_epoch:
        return None
    since = ((now or datetime.now(UTC)) - status.lastupdate).total_seconds()
    since = min(max(since, 0.0), per_epoch)  # clocks differ; never trust them beyond an epoch
    return max((status.epochs - status.current_epoch) * per_epoch - since, 0.0)


def accuracy_name(status: StatusResponse) -> str:
    """What `accuracy` measures: mAP@0.5 for a detector, the share classified right otherwise."""
    return "mAP@0.5" if status.parameters.model_type == "detection" else "accuracy"


def figures(status: StatusResponse) -> str:
    """`epoch 1/2 · loss 0.693 · accuracy 50.0% · ETA 0:07`, with the parts that are known."""
    parts = [f"epoch {status.current_epoch}/{status.epochs}"]
    if status.loss is not None:
        parts.append(f"loss {status.loss:.4g}")
    if status.accuracy is not None:
        parts.append(f"{accuracy_name(status)} {status.accuracy:.1%}")
    eta = eta_seconds(status)
    if eta is not None:
        parts.append(f"ETA {duration(eta)}")
    return " · ".join(parts)


def _short(text: str, width: int = MESSAGE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class _Display:
    """A rich progress bar on a terminal; a line per change elsewhere (CI logs, pipes)."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.live = console.is_terminal
        self.last_line = ""
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[figures]}", markup=False),
            TextColumn("{task.fields[message]}", markup=False, style="dim"),
            console=console,
            disable=not self.live,
        )
        self.task = self.bar.add_task(title, total=None, figures="", message="")

    def __enter__(self) -> _Display:
        self.bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.bar.stop()

    def show(self, status: StatusResponse) -> None:
        if self.live:
            self.bar.update(
                self.task,
                description=f"{status.result.value:<11}",
                total=status.epochs,
                completed=status.current_epoch,
                figures=figures(status),
                message=_short(status.message),
            )
            return
        # Without a terminal, print only what changed (the ETA alone is not a change).
        line = f"{status.result.value:<11} {figures_without_eta(status)} — {status.message}"
        if line != self.last_line:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            self.last_line = line

    def note(self, text: str) -> None:
        if self.live:
            self.bar.update(self.task, message=_short(text))
        elif text != self.last_line:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            self.last_line = text


def figures_without_eta(status: StatusResponse) -> str:
    return figures(status).split(" · ETA ")[0]


def follow(
    client: ApiClient,
    profile_id: str,
    project_name: str,
    console: Console,
    interval: float = DEFAULT_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> StatusResponse:
    """Poll the status route until the training ends; returns the final status.

    An API that is briefly unreachable (a redeploy, a network blip) is ridden out for
    FOLLOW_OUTAGE_SECONDS; the training itself goes on without us in any case.
    """
    outage_since: float | None = None
    with _Display(console, f"{profile_id}/{project_name}") as display:
        while True:
            try:
                status = client.status(profile_id, project_name)
            except CliError as error:
                if not error.transient:
                    raise
                now = time.monotonic()
                outage_since = outage_since or now
                if now - outage_since > FOLLOW_OUTAGE_SECONDS:
                    raise
                display.note(f"{error.message}; retrying")
            else:
                outage_since = None
                display.show(status)
                if status.result.finished:
                    break
            sleep(interval)
    if display.live:  # the bar cut the final message short: print it whole
        console.print(f"{status.result.value}: {status.message}", markup=False)
    return status
