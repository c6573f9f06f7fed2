"""`AITRAINER_API_TOKENS` parsing and token matching (pure logic)."""

from __future__ import annotations

import pytest

from function_app.auth import Grant, matching_grant, parse_tokens


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", [("plain", None)]),
        ("t1=alice|bob", [("t1", {"alice", "bob"})]),
        (" t1 = alice | bob , t2 ", [("t1", {"alice", "bob"}), ("t2", None)]),
        # base64 tokens end in '=' or '==': what follows is no profile list, so they stay whole
        ("c2VjcmV0IHRva2Vu==", [("c2VjcmV0IHRva2Vu==", None)]),
        ("c2VjcmV0IHRva2Vu=", [("c2VjcmV0IHRva2Vu=", None)]),
        ("c2VjcmV0IHRva2Vu==alice", [("c2VjcmV0IHRva2Vu=", {"alice"})]),
        ("=alice", [("=alice", None)]),  # no token before the '=': the whole item is one
        (",, ,", []),
    ],
)
def test_an_item_splits_at_its_last_equals_only_before_a_profile_list(
    value: str, expected: list[tuple[str, set[str] | None]]
) -> None:
    parsed = [
        (grant.token.decode(), None if grant.profiles is None else set(grant.profiles))
        for grant in parse_tokens(value)
    ]
    assert parsed == expected


@pytest.mark.parametrize("value", ["ok,tok=a/b", "ok,tok=alice|", "ok,secret-token=al ice|"])
def test_an_item_with_a_broken_profile_list_is_refused_naming_its_place_not_its_token(
    value: str,
) -> None:
    with pytest.raises(ValueError, match="AITRAINER_API_TOKENS item 2:") as refused:
        parse_tokens(value)
    assert "tok" not in str(refused.value)


def test_the_matching_grant_is_found_in_every_header_form() -> None:
    grants = parse_tokens("one,two=alice")
    assert matching_grant(grants, "Bearer two") == Grant(b"two", frozenset({"alice"}))
    assert matching_grant(grants, "one") == Grant(b"one", None)
    assert matching_grant(grants, "three") is None
    assert matching_grant(grants, "") is None


def test_fingerprints_name_tokens_apart_without_revealing_them() -> None:
    one, two = parse_tokens("secret-one,secret-two")
    assert one.fingerprint != two.fingerprint
    assert len(one.fingerprint) == 32 and "secret" not in one.fingerprint
    assert one.fingerprint == parse_tokens("secret-one=alice")[0].fingerprint
