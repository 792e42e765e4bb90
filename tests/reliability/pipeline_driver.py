"""Run the preference job for one partition in its own process, as a scheduler would.

Usage: ``python pipeline_driver.py SETTINGS_JSON PARTITION RESULT_JSON``. The settings are a
``Settings`` dumped as JSON. On completion the driver writes a JSON report: success, seconds spent in
the run (imports excluded), peak RSS of this process and the failure messages. A process that is
killed writes nothing.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dagster as dg

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import Settings


def main(settings_file: str, partition: str, result_file: str) -> int:
    """Run one partition; write the report; return 0 if the run succeeded."""
    settings = Settings.model_validate_json(Path(settings_file).read_text())
    job = build_definitions(settings).resolve_job_def(JOB_NAME)
    print(f"STARTED {partition}", flush=True)
    started = time.perf_counter()
    result = job.execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    elapsed = time.perf_counter() - started
    failures = [
        str(e.step_failure_data.error.message if e.step_failure_data.error else e.message)
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    report = {
        "success": result.success,
        "elapsed_s": elapsed,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "failures": failures,
    }
    Path(result_file).write_text(json.dumps(report))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
