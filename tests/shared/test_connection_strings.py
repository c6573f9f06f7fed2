"""Which storage endpoints a tenant's connection string may name (pure logic, a fake resolver)."""

from __future__ import annotations

import pytest

from shared.addresses import is_public
from shared.connection_strings import blob_endpoint, connection_string_problem

KEY = "c2VjcmV0LWtleS1uZXZlci10by1iZS1sZWFrZWQ="
DNS = {
    "clinic.blob.core.windows.net": ["20.60.1.1"],
    "clinic.blob.core.chinacloudapi.cn": ["42.159.1.1"],
    "clinic.privatelink.blob.core.windows.net": ["10.1.2.3"],  # our VNet's private endpoint
    "nat64.blob.core.windows.net": ["64:ff9b::a00:5"],
    "mixed.blob.core.windows.net": ["20.60.1.1", "192.168.0.7"],
}


def resolve(host: str, port: int, timeout: float) -> list[str]:
    if host == "slow.blob.core.windows.net":
        raise TimeoutError
    if host not in DNS:
        raise OSError("no such host")
    return DNS[host]


def problem(connection_string: str, **rules: object) -> str | None:
    return connection_string_problem(
        connection_string,
        allow_private=False,
        resolve=resolve,
        **rules,  # type: ignore[arg-type]
    )


def account(name: str, suffix: str = "core.windows.net", protocol: str = "https") -> str:
    return (
        f"DefaultEndpointsProtocol={protocol};AccountName={name};AccountKey={KEY};"
        f"EndpointSuffix={suffix}"
    )


def endpoint(url: str) -> str:
    return f"BlobEndpoint={url};SharedAccessSignature=sv=2024&sig={KEY}"


def test_a_public_account_in_any_configured_cloud_is_accepted() -> None:
    assert problem(account("clinic")) is None
    assert problem(endpoint("https://clinic.blob.core.windows.net/")) is None
    assert problem(account("clinic", "core.chinacloudapi.cn")) is None
    # The suffixes are a setting: a deployment can allow only the public cloud.
    only_public = problem(account("clinic", "core.chinacloudapi.cn"), suffixes=["core.windows.net"])
    assert only_public is not None and "Azure Storage account" in only_public


@pytest.mark.parametrize(
    ("connection_string", "rule"),
    [
        (account("clinic", protocol="http"), "must use https"),
        ("UseDevelopmentStorage=true", "must use https"),
        (endpoint("https://10.0.0.5:8080/x"), "must be an Azure Storage account"),
        (endpoint("https://169.254.169.254/metadata"), "must be an Azure Storage account"),
        (endpoint("https://localhost/devstoreaccount1"), "must be an Azure Storage account"),
        (endpoint("https://clinic.blob.core.windows.net.evil.example"), "Azure Storage account"),
        (endpoint("https://user:pw@clinic.blob.core.windows.net"), "user name or password"),
        (endpoint("https://clinic.privatelink.blob.core.windows.net"), "non-public address"),
        (endpoint("https://nat64.blob.core.windows.net"), "non-public address"),
        (endpoint("https://mixed.blob.core.windows.net"), "non-public address"),
        (endpoint("https://gone.blob.core.windows.net"), "does not resolve"),
        (endpoint("https://slow.blob.core.windows.net"), "did not resolve within"),
        ("not a connection string", "not a valid connection string"),
        # Which BlobEndpoint would the SDK use? Neither: a repeated key is refused.
        (
            endpoint("https://clinic.blob.core.windows.net") + ";BlobEndpoint=https://10.0.0.5",
            "not a valid connection string",
        ),
    ],
)
def test_endpoints_into_our_network_are_refused_naming_the_rule(
    connection_string: str, rule: str
) -> None:
    found = problem(connection_string)
    assert found is not None and rule in found, found
    assert found.startswith("azure_connection_string")
    assert KEY not in found  # never quotes the secret


def test_dev_allows_the_emulator_on_loopback() -> None:
    assert connection_string_problem("UseDevelopmentStorage=true", allow_private=True) is None
    assert connection_string_problem("garbage", allow_private=True) is not None


def test_the_endpoint_is_the_one_the_sdk_would_use() -> None:
    assert blob_endpoint(account("clinic")) == "https://clinic.blob.core.windows.net"
    assert blob_endpoint("accountname=a;endpointsuffix=core.usgovcloudapi.net;accountkey=k") == (
        "https://a.blob.core.usgovcloudapi.net"
    )
    assert blob_endpoint(endpoint("https://x.example/p")) == "https://x.example/p"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("20.60.1.1", True),
        ("2001:4860:4860::8888", True),
        ("10.0.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("fd00::1", False),
    ],
)
def test_translated_and_private_addresses_are_not_public(address: str, public: bool) -> None:
    assert is_public(address) is public
