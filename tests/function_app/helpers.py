"""Request bodies for the API tests."""

from __future__ import annotations

import uuid
from typing import Any

DROP = object()  # an override that removes the field from the body

AZURE_SECRET = (
    "DefaultEndpointsProtocol=https;AccountName=clinicphotos;"
    "AccountKey=c2VjcmV0LWtleS1uZXZlci10by1iZS1sZWFrZWQtYW55d2hlcmUtMTIzNDU2Nzg5MA==;"
    "EndpointSuffix=core.windows.net"
)
AWS_KEY_ID = "AKIAEXAMPLESECRETID77"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLESECRETKEY"


def start_body(**overrides: Any) -> dict[str, Any]:
    """A valid azure start request with a unique project name; overrides win (DROP removes)."""
    body: dict[str, Any] = {
        "profile_id": "alice",
        "project_name": f"teeth-{uuid.uuid4().hex[:8]}",
        "model_type": "classification",
        "storage_type": "azure",
        "container": "photos",
        "folder": "teeth",
        "zipped": False,
        "azure_connection_string": AZURE_SECRET,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not DROP}


def aws_body(**overrides: Any) -> dict[str, Any]:
    aws: dict[str, Any] = {
        "storage_type": "aws",
        "container": "clinic-bucket",
        "azure_connection_string": DROP,
        "aws_access_key_id": AWS_KEY_ID,
        "aws_secret_access_key": AWS_SECRET,
    }
    return start_body(**(aws | overrides))
