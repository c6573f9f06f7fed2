"""`GET /profiles` (the profiles a token may see) and `GET /profiles/{profile_id}/webhook-secret`
(the key a profile's webhooks are signed with)."""

from __future__ import annotations

from shared.contract import ProfileList, WebhookSecretResponse

from ..deps import GrantDep, ProfileDep, ServicesDep
from ..errors import ERROR_RESPONSES
from . import SeedRouter

router = SeedRouter()


@router.get("/profiles", response_model=ProfileList, responses=ERROR_RESPONSES)
def list_profiles(grant: GrantDep, services: ServicesDep) -> ProfileList:
    """The profiles this token may use: a limited token's own (with or without trainings),
    every profile that has trainings for an unlimited one."""
    if grant.profiles is not None:
        return ProfileList(profiles=sorted(grant.profiles))
    return ProfileList(profiles=services.jobs.profiles())


@router.get(
    "/profiles/{profile_id}/webhook-secret",
    response_model=WebhookSecretResponse,
    responses=ERROR_RESPONSES,
)
def webhook_secret(profile: ProfileDep, services: ServicesDep) -> WebhookSecretResponse:
    """The profile's own signing secret (derived from the master; another profile's cannot
    verify or forge these events). Answered to tokens allowed for the profile only."""
    return WebhookSecretResponse(
        profile_id=profile, webhook_secret=services.settings.tenant_webhook_secret(profile)
    )
