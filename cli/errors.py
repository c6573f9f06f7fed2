"""The one error type the commands raise, exit codes, and masking of secrets in messages."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

# Exit codes; click itself exits 2 on a usage error.
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TRAINING_FAILED = 3  # the training ended FAILED or CANCELLED
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

_ACCOUNT_KEY = re.compile(r"(AccountKey|SharedAccessSignature|sig)=[^;&\s]+", re.IGNORECASE)


# Values never to print: the token, connection strings, keys (registered as they are read).
_SECRETS: set[str] = set()


class CliError(Exception):
    """A failure the user can read in one line: printed as `error: <message>` on stderr."""

    prefix = "error: "

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, *, transient: bool = False):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        # True for "try again later" failures (API unreachable, 503), which a follower rides out.
        self.transient = transient

    def line(self) -> str:
        return self.prefix + redact(one_line(self.message, limit=2000), _SECRETS)


class Interrupted(CliError):
    """Ctrl-C: not an error of ours, so the line says what happened and what to do next."""

    prefix = ""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_INTERRUPTED)


def keep_secret(*values: str | None) -> None:
    """Mask `values` in every line the CLI prints about an error."""
    _SECRETS.update(value for value in values if value and len(value) >= 4)


def command(*words: str) -> str:
    """A command line to copy: `aitrainer status alice 'my project'`."""
    return " ".join(shlex.quote(word) for word in ("aitrainer", *words))


def one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace so that a server's or SDK's text fits one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` without any of `secrets`, nor an account key or SAS signature."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _ACCOUNT_KEY.sub(lambda match: f"{match.group(1)}=***", text)
