from __future__ import annotations

from pref_assets.core.ledger import check_ledger


def _row(pid: str | None, status: str = "ok", stage: str | None = None, reason: str | None = None) -> dict:
    return {"prompt_id": pid, "status": status, "failed_stage": stage, "reason": reason}


PROMPTS = [_row("a"), _row("b"), _row(None, "failed", "prompts", "missing_instruction")]


def test_complete_ledger_passes_and_counts_failures_of_this_stage() -> None:
    rows = [
        _row("a"),
        _row("b", "failed", "ratings", "judge_unparseable: x"),
        _row(None, "failed", "prompts", "m"),
    ]
    check = check_ledger(PROMPTS, rows, "ratings")
    assert check.passed and check.failed_here == 1 and check.failure_rate == 1 / 3


def test_missing_prompt_fails() -> None:
    check = check_ledger(PROMPTS, [_row("a"), _row(None, "failed", "prompts", "m")], "grouped")
    assert not check.passed and check.missing == ("b",)


def test_row_without_reason_fails() -> None:
    rows = [_row("a"), _row("b", "failed", "grouped", None), _row(None, "failed", "prompts", "m")]
    check = check_ledger(PROMPTS, rows, "grouped")
    assert not check.passed and check.unexplained == 1


def test_long_format_stage_counts_each_call() -> None:
    rows = [
        _row("a"),
        _row("a", "failed", "generations_by_model", "timeout: x"),
        _row("b"),
        _row("b"),
        _row(None, "failed", "prompts", "m"),
    ]
    check = check_ledger(PROMPTS, rows, "generations_by_model")
    assert check.passed and check.failed_here == 1 and check.total == 5


def _keyed(row_id: str, pid: str | None, status: str = "ok", reason: str | None = None) -> dict:
    return _row(pid, status, None if status == "ok" else "prompts", reason) | {"row_id": row_id}


def test_rows_sharing_a_prompt_id_are_told_apart_by_row_id() -> None:
    prompts = [_keyed("b#0", "a"), _keyed("b#1", "a", "failed", "duplicate"), _keyed("b#2", None, "failed", "m")]
    check = check_ledger(prompts, [_keyed("b#0", "a"), _keyed("b#2", None, "failed", "m")], "grouped")
    assert not check.passed and check.missing == ("b#1",)
    stray = [*prompts, _keyed("other#0", "a")]
    check = check_ledger(prompts, stray, "grouped")
    assert not check.passed and check.unknown == ("other#0",)
