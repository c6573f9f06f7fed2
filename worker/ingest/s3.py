"""Datasets in S3 (or an S3-compatible endpoint: boto3 honours AWS_ENDPOINT_URL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from worker.ingest.source import IngestError, RemoteFile

_CHUNK = 1 << 20

T = TypeVar("T")

_CREDENTIAL_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}


class S3Source:
    def __init__(self, secrets: dict[str, str], bucket: str, region: str | None) -> None:
        self.description = f"bucket '{bucket}'"
        self.bucket = bucket
        self.client: Any = boto3.client(
            "s3",
            aws_access_key_id=secrets["aws_access_key_id"],
            aws_secret_access_key=secrets["aws_secret_access_key"],
            aws_session_token=secrets.get("aws_session_token"),
            region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32),
        )

    def _call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise IngestError(f"bucket '{self.bucket}' does not exist") from None
            if code in _CREDENTIAL_ERRORS:
                raise IngestError(
                    f"S3 refused aws_access_key_id/aws_secret_access_key ({code})"
                ) from None
            if code in ("AccessDenied", "403"):
                raise IngestError(f"the AWS credentials may not read {self.description}") from None
            raise
        except EndpointConnectionError:
            raise IngestError("could not reach S3 (check aws_region)") from None
        except BotoCoreError as error:
            raise IngestError(f"S3 request failed ({type(error).__name__})") from None

    def list(self, prefix: str) -> list[RemoteFile]:
        def collect() -> list[RemoteFile]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            return [
                RemoteFile(item["Key"], int(item["Size"]))
                for page in pages
                for item in page.get("Contents", [])
            ]

        return self._call(collect)

    def download(self, name: str, path: Path, size: int) -> None:
        def fetch() -> None:
            with path.open("wb") as handle:
                if size == 0:
                    return
                # A range of the listed size: an object that grew since the listing stops there.
                answer = self.client.get_object(
                    Bucket=self.bucket, Key=name, Range=f"bytes=0-{size - 1}"
                )
                left = size
                for chunk in answer["Body"].iter_chunks(_CHUNK):
                    handle.write(chunk[:left])
                    left -= len(chunk)
                    if left <= 0:
                        break

        self._call(fetch)
