from __future__ import annotations

import json

import pytest

from pref_assets.core.secrets import MASK, Secrets, mask_secrets, secret_fingerprint

KEY = "sk-SENTINEL-7f3a9c2e5b1d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Bearer {KEY}", "Authorization: Bearer ***"),
        (f"authorization: bearer {KEY.lower()}", "authorization: bearer ***"),
        (f"AUTHORIZATION: BEARER {KEY.upper()}", "AUTHORIZATION: BEARER ***"),
        (f"{KEY}{KEY} and {KEY}", "*** and ***"),
        (f"cut by the server: Bearer {KEY[:16]}", "cut by the server: Bearer ***"),
        (f"a short prefix is not a secret: {KEY[:8]}", f"a short prefix is not a secret: {KEY[:8]}"),
        ("no secret here", "no secret here"),
        ("", ""),
    ],
)
def test_every_form_of_a_secret_is_masked(text: str, expected: str) -> None:
    assert mask_secrets(text, KEY) == expected


def test_json_escaped_forms_are_masked() -> None:
    key = 'ab/cd"ef+gh=ij'
    escaped = json.dumps({"h": key})
    slashed = escaped.replace("/", "\\/")
    secrets = Secrets.of(key)
    assert key not in json.loads(secrets.mask(escaped))["h"] and json.loads(secrets.mask(slashed))["h"] == MASK


def test_the_mask_comes_before_the_cut() -> None:
    text = "x" * 290 + f"Bearer {KEY}"
    cut = Secrets.of(KEY).cut(text, 300)
    assert len(cut) == 300 and KEY[:3] not in cut[290:]


def test_short_and_empty_values_are_never_masked() -> None:
    assert not Secrets.of(None, "", "  ", "abc1234")
    assert mask_secrets("the abc1234 stays", "abc1234") == "the abc1234 stays"


def test_positions_hold_when_lower_casing_changes_lengths() -> None:
    # "İ".lower() is two characters: only ASCII letters are folded, so spans stay aligned
    assert mask_secrets(f"İİİ {KEY} İ", KEY) == "İİİ *** İ"


def test_values_are_masked_in_nested_json() -> None:
    value = {"a": [f"Bearer {KEY}", {KEY: 1}], "n": 3}
    assert Secrets.of(KEY).mask_values(value) == {"a": ["Bearer ***", {MASK: 1}], "n": 3}


def test_secrets_combine_and_keys_surrounded_by_secrets_merge() -> None:
    other = "hf_OtherTokenValue123456"
    both = Secrets.of(KEY) + Secrets.of(other)
    assert both.mask(f"{KEY} {other}") == "*** ***"


def test_fingerprints_tell_keys_apart_without_showing_them() -> None:
    assert secret_fingerprint(None) == secret_fingerprint("") == ""
    assert secret_fingerprint(KEY) == secret_fingerprint(f" {KEY}\n") != secret_fingerprint(KEY + "x")
    assert len(secret_fingerprint(KEY)) == 16 and KEY not in secret_fingerprint(KEY)
