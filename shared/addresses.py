"""Which hosts a request may make us contact: public addresses only, found within a time limit.

A tenant names hosts we connect to (its webhook, its storage account); without this check
those names are a door into our network (metadata endpoints, private ranges, the storage
account's own private endpoint).
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import threading
import time
from collections.abc import Callable

# How long a host name may take to resolve, and how many lookups may be under way at once
# (a lookup that hangs keeps its slot until the resolver gives up on its own).
RESOLVE_SECONDS = 5.0
_LOOKUPS = threading.BoundedSemaphore(8)

# Public by Python's registry, but a translator in front of an IPv4 address that may be
# private: NAT64 (RFC 6052, 8215) and 6to4 (RFC 3056).
_TRANSLATED = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2002::/16"),
)

Resolver = Callable[[str, int, float], list[str]]


def is_public(address: str) -> bool:
    """A globally reachable address that is not a translated (possibly private) IPv4 one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(str(ip.ipv4_mapped))
        if any(ip in network for network in _TRANSLATED):
            return False
    return ip.is_global


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (the dev stack: Azurite, plain http)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_host_problem(
    field: str,
    host: str,
    port: int,
    resolve_seconds: float = RESOLVE_SECONDS,
    resolve: Resolver | None = None,
) -> str | None:
    """Why `host` may not be contacted for `field` (it resolves late, not at all, or to a
    non-public address), or None when every address it resolves to is public."""
    found = checked_addresses(field, host, port, resolve_seconds, resolve)
    return found if isinstance(found, str) else None


def checked_addresses(
    field: str,
    host: str,
    port: int,
    resolve_seconds: float = RESOLVE_SECONDS,
    resolve: Resolver | None = None,
    *,
    allow_private: bool = False,
) -> list[str] | str:
    """The addresses `host` resolves to, every one public unless `allow_private`; or why
    `host` may not be contacted for `field`. A caller that connects uses these very
    addresses, so no second lookup can answer differently."""
    try:
        addresses = (resolve or resolve_host)(host, port, resolve_seconds)
    except TimeoutError:
        return f"{field} host '{host}' did not resolve within {resolve_seconds:g} s"
    except (OSError, UnicodeError):
        return f"{field} host '{host}' does not resolve"
    if not allow_private and (not addresses or not all(map(is_public, addresses))):
        return f"{field} host '{host}' resolves to a non-public address"
    return addresses


def resolve_host(host: str, port: int, timeout: float) -> list[str]:
    """The addresses `host` resolves to; TimeoutError when that takes over `timeout` s.

    getaddrinfo cannot be interrupted, so it runs on a daemon thread that the caller stops
    waiting for: a resolver that hangs delays neither the answer nor the process's exit.
    """
    deadline = time.monotonic() + timeout
    if not _LOOKUPS.acquire(timeout=timeout):
        raise TimeoutError
    answers: queue.SimpleQueue[list[str] | Exception] = queue.SimpleQueue()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            answers.put([str(info[4][0]) for info in infos])
        except Exception as error:
            answers.put(error)
        finally:
            _LOOKUPS.release()

    try:
        threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    except RuntimeError:  # no thread to be had: the lookup never runs, so free its slot
        _LOOKUPS.release()
        raise
    try:
        answer = answers.get(timeout=max(deadline - time.monotonic(), 0))
    except queue.Empty:
        raise TimeoutError from None
    if isinstance(answer, Exception):
        raise answer
    return answer
