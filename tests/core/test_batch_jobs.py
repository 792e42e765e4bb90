"""Batch request files and result lines: splitting by the provider's limits, reading lines back by custom_id."""

from __future__ import annotations

import json

import pytest

from pref_assets.core.batch_jobs import (
    CHAT_URL,
    OPENAI_SHAPE,
    FileLimits,
    OversizedRequestError,
    RequestLine,
    is_open,
    iter_lines,
    parse_result_lines,
    split_files,
)


def _lines(n: int, text: str = "hello") -> list[RequestLine]:
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"{text} {i}"}]} for i in range(n)]
    return [RequestLine(f"key-{i}", body) for i, body in enumerate(bodies)]


def test_a_request_line_is_the_documented_shape() -> None:
    line = json.loads(_lines(1)[0].encoded())
    assert line == {
        "custom_id": "key-0",
        "method": "POST",
        "url": CHAT_URL,
        "body": {"model": "m", "messages": [{"role": "user", "content": "hello 0"}]},
    }


@pytest.mark.parametrize(("limits", "sizes"), [
    (FileLimits(max_requests=4), [4, 4, 2]),
    (FileLimits(max_requests=100), [10]),
    (FileLimits(max_bytes=3 * len(_lines(1)[0].encoded())), [3, 3, 3, 1]),
])  # fmt: skip
def test_files_split_by_requests_and_bytes_keep_order(limits: FileLimits, sizes: list[int]) -> None:
    files = split_files(_lines(10), limits)
    assert [len(f.lines) for f in files] == sizes
    assert [k for f in files for k in f.keys] == [f"key-{i}" for i in range(10)]
    assert all(len(f.content) <= limits.max_bytes and f.content.count(b"\n") == len(f.lines) for f in files)


def test_a_request_larger_than_a_file_is_refused_by_name() -> None:
    with pytest.raises(OversizedRequestError, match="key-0"):
        split_files(_lines(1, "x" * 2000), FileLimits(max_bytes=1024))


def test_a_job_key_depends_on_the_requests_not_their_order() -> None:
    (one,), (two,) = split_files(_lines(5), FileLimits()), split_files(_lines(5)[::-1], FileLimits())
    assert one.job_key("e") == two.job_key("e") != one.job_key("other")
    assert split_files(_lines(4), FileLimits())[0].job_key("e") != one.job_key("e")


def _ok(key: str, text: str = "hi") -> bytes:
    body = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    line = {"id": "r", "custom_id": key, "response": {"status_code": 200, "body": body}, "error": None}
    return json.dumps(line).encode()


MESSY = [
    (_ok("a"), "a", True),
    (json.dumps({"custom_id": "b", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}}).encode(),
     "b", False),
    (json.dumps({"custom_id": "c", "response": None,
                 "error": {"code": "batch_expired", "message": "too late"}}).encode(), "c", False),
    (json.dumps({"custom_id": "d", "response": {"status_code": 200, "body": "not an object"}}).encode(), "d", False),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "key", "ok"), MESSY)
def test_result_lines_map_back_by_custom_id(raw: bytes, key: str, ok: bool) -> None:
    parsed = parse_result_lines([raw + b"\n"], frozenset("abcd"))
    assert parsed.by_key[key].ok is ok and not parsed.unreadable


def test_errors_carry_the_provider_message() -> None:
    parsed = parse_result_lines([MESSY[1][0], b"\n", MESSY[2][0]], frozenset("abcd"))
    assert parsed.by_key["b"].error == "HTTP 500: boom"
    assert parsed.by_key["c"].error == "batch_expired: too late"


def test_a_bad_line_costs_only_itself() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    long_line = b'{"custom_id": "x", "pad": "' + b"y" * 5000 + b'"}'
    stream = [_ok("a") + b"\nnot json\n", deep + b"\n", long_line + b"\n", _ok("zz") + b"\n", _ok("b")]
    parsed = parse_result_lines(stream, frozenset({"a", "b"}), max_line_bytes=4096)
    assert set(parsed.by_key) == {"a", "b"} and all(r.ok for r in parsed.by_key.values())
    assert len(parsed.unreadable) == 4  # not JSON, too deep (too long first), too long, unknown custom_id


def test_lines_split_across_chunks_are_joined_and_long_ones_skipped() -> None:
    chunks = [b"ab", b"c\nde", b"f", b"\n" + b"g" * 10, b"g" * 10 + b"\nh"]
    assert list(iter_lines(chunks, 8)) == [b"abc", b"def", None, b"h"]


def test_an_answer_beats_an_earlier_error_for_the_same_key() -> None:
    parsed = parse_result_lines([MESSY[1][0] + b"\n", _ok("b")], frozenset("b"))
    assert parsed.by_key["b"].ok


@pytest.mark.parametrize(("status", "open_"), [("validating", True), ("in_progress", True), ("finalizing", True),
                                               ("cancelling", True), ("completed", False), ("failed", False),
                                               ("expired", False), ("cancelled", False)])  # fmt: skip
def test_status_classification(status: str, open_: bool) -> None:
    assert is_open(status) is open_


def test_a_batch_object_reads_with_wrong_types_as_absent() -> None:
    job = OPENAI_SHAPE.job_status({"id": "batch_1", "status": "expired", "output_file_id": 5,
                                   "request_counts": {"total": 10, "completed": "x", "failed": 2},
                                   "metadata": {"pref_assets_job": "k"}, "expired_at": 100,
                                   "errors": {"data": [{"message": "window passed"}]}})  # fmt: skip
    assert (job.status, job.output_file_id, job.total, job.completed, job.failed) == ("expired", None, 10, 0, 2)
    assert job.metadata == {"pref_assets_job": "k"} and job.ended_at == 100.0 and job.errors == ("window passed",)
    assert not job.open
