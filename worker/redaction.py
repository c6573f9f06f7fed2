"""Keep the job's credentials out of every log line and stored message."""

from __future__ import annotations

import logging
import re

# Parts of a connection string that are secrets on their own.
_SECRET_PARTS = re.compile(r"(?:AccountKey|SharedAccessSignature|sig)=([^;&\s]+)", re.IGNORECASE)
_MASK = "***"


class Redactor(logging.Filter):
    """A logging filter (and a plain function) that masks the current job's secrets."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def protect(self, secrets: dict[str, str]) -> None:
        """Mask these values (and a connection string's key parts) from now on."""
        values: set[str] = set()
        for value in secrets.values():
            values.add(value)
            values.update(match.group(1) for match in _SECRET_PARTS.finditer(value))
        # Longest first, so a whole connection string is masked before its key.
        self.secrets = sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = self.redact(message)
            if record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = self.redact(text)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True
