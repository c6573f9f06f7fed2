"""What a tenant's azure_connection_string may name: an Azure Storage account, over https,
at public addresses only. Checked when a training is requested and again in the worker, so
a string cannot point the worker at our network (a private endpoint, a metadata service)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from shared.addresses import RESOLVE_SECONDS, Resolver, public_host_problem

# Blob endpoints end in `.blob.<suffix>`: the public cloud, Azure China, Azure US Government.
AZURE_STORAGE_SUFFIXES = ("core.windows.net", "core.chinacloudapi.cn", "core.usgovcloudapi.net")
# What `UseDevelopmentStorage=true` means to the SDK: the emulator on this machine.
DEVELOPMENT_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"
INVALID = "azure_connection_string is not a valid connection string"


def blob_endpoint(connection_string: str) -> str:
    """The blob endpoint the storage SDK would use for `connection_string` (its rules: keys
    are case-insensitive; BlobEndpoint wins; else AccountName, EndpointSuffix and
    DefaultEndpointsProtocol). ValueError when it is not a connection string."""
    values: dict[str, str] = {}
    for part in connection_string.split(";"):
        if not part.strip():
            continue
        key, equals, value = part.partition("=")
        key = key.strip().lower()
        # A repeated key would make "which one the SDK uses" a question: refuse it.
        if not equals or not key or key in values:
            raise ValueError(INVALID)
        values[key] = value.strip()
    if values.get("usedevelopmentstorage", "").lower() == "true":
        return DEVELOPMENT_BLOB_ENDPOINT
    if "blobendpoint" in values:
        return values["blobendpoint"]
    account = values.get("accountname")
    if not account:
        raise ValueError(INVALID)
    protocol = values.get("defaultendpointsprotocol", "https")
    return f"{protocol}://{account}.blob.{values.get('endpointsuffix', AZURE_STORAGE_SUFFIXES[0])}"


def connection_string_problem(
    connection_string: str,
    *,
    allow_private: bool,
    suffixes: Sequence[str] = AZURE_STORAGE_SUFFIXES,
    resolve_seconds: float = RESOLVE_SECONDS,
    resolve: Resolver | None = None,
) -> str | None:
    """Why the worker may not read a dataset with `connection_string`, or None.

    `allow_private` (dev and tests: Azurite on loopback) skips the endpoint rules. The
    answer never quotes the string (it holds the account key)."""
    try:
        endpoint = urlsplit(blob_endpoint(connection_string))
        host, port = endpoint.hostname, endpoint.port
    except ValueError:
        return INVALID
    if allow_private:
        return None
    if endpoint.scheme.lower() != "https" or not host:
        return "azure_connection_string: the blob endpoint must use https"
    if endpoint.username or endpoint.password:
        return "azure_connection_string: the blob endpoint must not hold a user name or password"
    if not any(host.endswith(f".blob.{suffix}") for suffix in suffixes):
        return (
            "azure_connection_string: the blob endpoint must be an Azure Storage account "
            f"(<account>.blob.{suffixes[0]}"
            + (f", or .blob. on {', '.join(suffixes[1:])}" if len(suffixes) > 1 else "")
            + ")"
        )
    return public_host_problem(
        "azure_connection_string", host, port or 443, resolve_seconds, resolve
    )
