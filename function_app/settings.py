"""The API's settings (`AITRAINER_*`): the shared ones plus tokens, webhooks and worker mode."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from shared.contract import WEBHOOK_RESOLVE_SECONDS
from shared.settings import DEV_API_TOKEN, CommonSettings

from .auth import parse_tokens


class ApiSettings(CommonSettings):
    """The API's settings (`AITRAINER_*`)."""

    api_tokens: SecretStr | None = None
    default_webhook_url: str | None = None
    max_active_per_token: int = Field(
        default=10,
        ge=1,
        description="trainings one API token may have queued or running at once (429 beyond)",
    )
    webhook_allow_private: bool = False
    webhook_resolve_seconds: float = Field(
        default=WEBHOOK_RESOLVE_SECONDS,
        gt=0,
        description="how long a start request waits for its webhook host name to resolve",
    )
    worker_mode: Literal["always_on", "on_demand"] = Field(
        default="always_on",
        description="always_on: a worker heartbeat must be fresh for /checkserver/ to be Ok; "
        "on_demand: workers start per queued job (Container Apps job), so none may be online",
    )

    require_gpu: bool | None = Field(
        default=None,
        description="/checkserver/ answers Failed when every online worker trains on the CPU; "
        "default: true outside dev",
    )

    @property
    def gpu_required(self) -> bool:
        return self.require_gpu if self.require_gpu is not None else self.env != "dev"

    @model_validator(mode="after")
    def _tokens_outside_dev(self) -> ApiSettings:
        if self.api_tokens is None or not self.api_tokens.get_secret_value().strip():
            if self.env != "dev":
                raise ValueError("AITRAINER_API_TOKENS must be set outside dev")
            self.api_tokens = SecretStr(DEV_API_TOKEN)
        grants = parse_tokens(self.api_tokens.get_secret_value())  # a typo fails at startup
        if self.env != "dev" and any(grant.token == DEV_API_TOKEN.encode() for grant in grants):
            raise ValueError("AITRAINER_API_TOKENS contains the published dev token")
        return self
