import logging

import pytest

from worker.redaction import Redactor

CONNECTION = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=S3cr3tK3y==;EndpointSuffix=x"


def test_whole_secrets_and_key_parts_are_masked() -> None:
    redactor = Redactor()
    redactor.protect({"azure_connection_string": CONNECTION, "aws_secret_access_key": "abcd/efgh"})
    text = f"failed with {CONNECTION} and key S3cr3tK3y== and abcd/efgh"
    assert redactor.redact(text) == "failed with *** and key *** and ***"


def test_log_records_and_tracebacks_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    redactor = Redactor()
    redactor.protect({"azure_connection_string": CONNECTION})
    logger = logging.getLogger("test.redaction")
    logger.addFilter(redactor)
    try:
        raise ValueError(f"bad {CONNECTION}")
    except ValueError:
        logger.exception("download of %s failed", CONNECTION)
    assert "S3cr3tK3y" not in caplog.text
    assert "download of *** failed" in caplog.text
