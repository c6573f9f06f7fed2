"""Where the CLI's settings come from: flags first, then `AITRAINER_CLI_*` variables.

The CLI has its own prefix so that a shell that also runs the API or a worker (whose
`AITRAINER_STORAGE_CONNECTION_STRING` is the service's own account) never mixes the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from cli.errors import CliError

ENV_API_URL = "AITRAINER_CLI_API_URL"
ENV_TOKEN = "AITRAINER_CLI_TOKEN"  # noqa: S105 - the variable's name, not a token
ENV_PROFILE = "AITRAINER_CLI_PROFILE"
ENV_STORAGE_CONNECTION_STRING = "AITRAINER_CLI_STORAGE_CONNECTION_STRING"
ENV_CONTAINER = "AITRAINER_CLI_CONTAINER"
ENV_AWS_ACCESS_KEY_ID = "AITRAINER_CLI_AWS_ACCESS_KEY_ID"
ENV_AWS_SECRET_ACCESS_KEY = "AITRAINER_CLI_AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a name
ENV_AWS_SESSION_TOKEN = "AITRAINER_CLI_AWS_SESSION_TOKEN"  # noqa: S105 - a name
ENV_AWS_REGION = "AITRAINER_CLI_AWS_REGION"
ENV_S3_ENDPOINT_URL = "AITRAINER_CLI_S3_ENDPOINT_URL"

DEFAULT_API_URL = "http://127.0.0.1:7071"  # `make dev`
DEFAULT_PROFILE = "default"
DEFAULT_AZURE_CONTAINER = "datasets"
DEFAULT_POLL_SECONDS = 2.0
HTTP_TIMEOUT_SECONDS = 30.0
# While following, the API may be unreachable this long (a redeploy, a network blip).
FOLLOW_OUTAGE_SECONDS = 120.0


@dataclass(frozen=True)
class ApiConfig:
    """How to reach the API."""

    url: str
    token: str | None

    @classmethod
    def build(cls, url: str, token: str | None) -> ApiConfig:
        url = url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"--api-url must be an http:// or https:// URL (got '{url}')")
        return cls(url=url, token=(token or "").strip() or None)


@dataclass(frozen=True)
class StorageConfig:
    """Where `train` uploads the dataset: an Azure account, or S3 (or an S3-compatible store)."""

    kind: str  # "azure" or "aws"
    container: str
    azure_connection_string: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_region: str | None = None
    s3_endpoint_url: str | None = None

    @classmethod
    def build(
        cls,
        kind: str | None,
        container: str | None,
        connection_string: str | None,
        aws_access_key_id: str | None,
        aws_secret_access_key: str | None,
        aws_session_token: str | None,
        aws_region: str | None,
        s3_endpoint_url: str | None,
    ) -> StorageConfig:
        has_azure = bool(connection_string)
        has_aws = bool(aws_access_key_id or aws_secret_access_key)
        if kind is None:
            if not has_azure and not has_aws:
                raise CliError(
                    f"no dataset storage configured: set {ENV_STORAGE_CONNECTION_STRING} "
                    f"(Azure) or {ENV_AWS_ACCESS_KEY_ID} and {ENV_AWS_SECRET_ACCESS_KEY} (S3)"
                )
            kind = "azure" if has_azure else "aws"
        if kind == "azure":
            if not has_azure:
                raise CliError(
                    "--storage azure needs --storage-connection-string "
                    f"or {ENV_STORAGE_CONNECTION_STRING}"
                )
            return cls(
                kind="azure",
                container=container or DEFAULT_AZURE_CONTAINER,
                azure_connection_string=connection_string,
            )
        if not (aws_access_key_id and aws_secret_access_key):
            raise CliError(
                f"S3 storage needs both {ENV_AWS_ACCESS_KEY_ID} and {ENV_AWS_SECRET_ACCESS_KEY} "
                "(or --aws-access-key-id and --aws-secret-access-key)"
            )
        if not container:
            # Bucket names are global: there is no sensible default.
            raise CliError(f"S3 storage needs --container (the bucket) or {ENV_CONTAINER}")
        return cls(
            kind="aws",
            container=container,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token or None,
            aws_region=aws_region or None,
            s3_endpoint_url=s3_endpoint_url or None,
        )

    def secrets(self) -> list[str | None]:
        return [
            self.azure_connection_string,
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
        ]
