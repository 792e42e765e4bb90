"""Shared helpers of the reliability suite: settings built in code, runs, Parquet reads, subprocess runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import EndpointSettings, JudgeSettings, ModelSettings, Settings, SourceSettings
from pref_assets.testing.echo_server import serving

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRIVER = HERE / "pipeline_driver.py"
PIPELINE_STAGES = ("prompts", "generations_by_model", "grouped", "ratings", "dpo_pairs", "argilla_records")
GENERATORS = ("gen-a", "gen-b")
JUDGE_MODEL = "judge-model"
GENERATOR_PARAMS = ({"temperature": 0.2, "max_tokens": 96}, {"temperature": 0.9, "max_tokens": 96})
JUDGE_PARAMS = {"temperature": 0.0, "max_tokens": 512}


def write_prompts(path: Path, count: int) -> list[str]:
    """Write ``count`` distinct JSONL prompts with topics; return the instructions."""
    instructions = [f"Prompt {i}: explain idea number {i} in two sentences." for i in range(count)]
    path.write_text(
        "".join(json.dumps({"instruction": t, "topic": f"t{i % 4}"}) + "\n" for i, t in enumerate(instructions))
    )
    return instructions


def fake_settings(
    base_url: str,
    store: Path,
    source: Path,
    *,
    batch_size: int,
    endpoint: dict[str, Any] | None = None,
    name: str = "fake",
    **extra: Any,
) -> Settings:
    """Return settings for two generators and a judge on one endpoint called ``name``, reading ``source``.

    ``endpoint`` overrides endpoint fields; ``extra`` sets other ``Settings`` fields.
    """
    endpoint_fields = {"name": name, "base_url": base_url, "structured_output": "json_schema"} | (endpoint or {})
    return Settings(
        storage_dir=str(store),
        batch_size=batch_size,
        source=SourceSettings(kind="files", paths=[str(source)]),
        endpoints=[EndpointSettings(**endpoint_fields)],
        generators=[
            ModelSettings(name=GENERATORS[0], endpoint=name, model="model-a", params=GENERATOR_PARAMS[0]),
            ModelSettings(name=GENERATORS[1], endpoint=name, model="model-b", params=GENERATOR_PARAMS[1]),
        ],
        judge=JudgeSettings(name="judge", endpoint=name, model=JUDGE_MODEL, params=JUDGE_PARAMS),
        **extra,
    )


def run_partition(
    settings: Settings, partition: str, instance: dg.DagsterInstance | None = None, **options: Any
) -> dg.ExecuteInProcessResult:
    """Run the whole preference job for one partition in this process."""
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    return job.execute_in_process(
        partition_key=partition, instance=instance or dg.DagsterInstance.ephemeral(), **options
    )


def read_stage(store: Path | str, stage: str, partition: str) -> pl.DataFrame:
    """Return one stage's Parquet file for one partition."""
    return pl.read_parquet(Path(store) / stage / f"{partition}.parquet")


def status_counts(frame: pl.DataFrame) -> dict[str, int]:
    """Return rows per ``status`` and, for non-ok rows, per ``status/stage/reason kind``."""
    counts: Counter[str] = Counter()
    for row in frame.select("status", "failed_stage", "reason").iter_rows(named=True):
        counts[row["status"]] += 1
        if row["status"] != "ok":
            counts[f"{row['status']}/{row['failed_stage']}/{str(row['reason']).split(':')[0]}"] += 1
    return dict(sorted(counts.items()))


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """Return the messages of failed steps and failed checks of a run."""
    messages = []
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        described = data.user_failure_data.description if data.user_failure_data else None
        messages.append(f"{described or ''} {data.error.message if data.error else ''}")
    messages += [e.description or "" for e in result.get_asset_check_evaluations() if not e.passed]
    return messages


def scan_for(needle: str, roots: Iterable[Path]) -> list[str]:
    """Return every file under ``roots`` whose bytes contain ``needle``."""
    raw = needle.encode()
    hits = []
    for root in roots:
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            if raw in path.read_bytes():
                hits.append(str(path))
    return hits


def driver_command(settings: Settings, partition: str, out: Path, work: Path) -> list[str]:
    """Return the command that runs one partition in a fresh Python process (see pipeline_driver.py)."""
    config = work / f"settings-{os.getpid()}-{len(list(work.glob('settings-*')))}.json"
    config.write_text(settings.model_dump_json())
    return [sys.executable, str(DRIVER), str(config), partition, str(out)]


def driver_env() -> dict[str, str]:
    """Return the environment of a driver process: this checkout first on the path, no telemetry."""
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}",
        "DAGSTER_TELEMETRY_DISABLED": "1",
    }


def run_driver(settings: Settings, partition: str, work: Path, timeout: float = 300.0) -> dict[str, Any]:
    """Run one partition in a subprocess to completion; return the driver's JSON report."""
    out = work / f"result-{len(list(work.glob('result-*')))}.json"
    done = subprocess.run(
        driver_command(settings, partition, out, work),
        env=driver_env(),
        timeout=timeout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and out.is_file(), f"driver failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return dict(json.loads(out.read_text()))


class _StubHandler(BaseHTTPRequestHandler):
    """Chat completions with two switchable faults: judge answers missing verdicts, 400 for big bodies."""

    server: _StubServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(len(body))
        if self.server.max_body is not None and len(body) > self.server.max_body:
            message = f"request body of {len(body)} bytes is over the limit of {self.server.max_body} bytes"
            self._reply(400, {"error": {"message": message, "type": "invalid_request_error"}})
            return
        request = json.loads(body)
        fmt = request.get("response_format")
        if fmt:
            keys = fmt["json_schema"]["schema"]["required"]
            keys = keys[: max(0, len(keys) - self.server.drop_verdicts)]
            content = json.dumps({k: {"rationale": "clear", "rating": 5 - i} for i, k in enumerate(keys)})
        else:
            content = f"{request['model']} answers: {request['messages'][-1]['content'][:40]}"
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        self._reply(200, {"choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 10}})

    def _reply(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, max_body: int | None, drop_verdicts: int) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.max_body = max_body
        self.drop_verdicts = drop_verdicts
        self.requests: list[int] = []

    @property
    def base_url(self) -> str:
        """Return the OpenAI base URL of this server."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def stub_openai(*, max_body: int | None = None, drop_verdicts: int = 0) -> Iterator[_StubServer]:
    """Run a minimal OpenAI-compatible server in a thread; ``.base_url`` and ``.requests`` (body sizes)."""
    with serving(_StubServer(max_body, drop_verdicts)) as server:
        yield server


def closed_port() -> int:
    """Return a local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
