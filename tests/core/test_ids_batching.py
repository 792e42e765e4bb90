from __future__ import annotations

import pytest

from pref_assets.core.batching import batch_bounds, batch_key, batch_keys
from pref_assets.core.ids import prompt_id, record_uuid


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("What's 2+2?", "7762ecf17ad41479767061a8f4a7bfa3b63d371672af5180872f9b82b4cd4e29"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ],
)
def test_prompt_id_is_sha256_of_utf8_instruction(instruction: str, expected: str) -> None:
    assert prompt_id(instruction) == expected


def test_prompt_id_distinguishes_unicode_forms() -> None:
    assert prompt_id("café") != prompt_id("cafe\u0301")


def test_record_uuid_is_stable_per_dataset_and_prompt() -> None:
    a = record_uuid("ds", prompt_id("x"))
    assert a == record_uuid("ds", prompt_id("x"))
    assert a != record_uuid("other", prompt_id("x"))
    assert a != record_uuid("ds", prompt_id("y"))


@pytest.mark.parametrize(
    ("n_rows", "size", "count"),
    [(0, 8, 1), (1, 8, 1), (8, 8, 1), (9, 8, 2), (160, 8, 20), (161, 8, 21)],
)
def test_batch_keys_cover_all_rows(n_rows: int, size: int, count: int) -> None:
    keys = batch_keys(n_rows, size)
    assert len(keys) == count
    covered = [i for k in keys for i in range(*batch_bounds(k, size))]
    assert covered[:n_rows] == list(range(n_rows))


def test_batch_key_round_trip() -> None:
    assert batch_key(3) == "batch-00003"
    assert batch_bounds("batch-00003", 10) == (30, 40)


@pytest.mark.parametrize("key", ["batch-", "3", "batch-x1", "part-00001"])
def test_batch_bounds_rejects_foreign_keys(key: str) -> None:
    with pytest.raises(ValueError, match="not a batch partition key"):
        batch_bounds(key, 8)


def test_batch_keys_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batch_keys(10, 0)
