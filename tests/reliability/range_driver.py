"""Run the preference job for a range of partitions (``START...END``) in one run in its own process.

Usage: ``python range_driver.py SETTINGS_JSON START...END RESULT_JSON``; the report is pipeline_driver's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dagster as dg
from range_support import run_range

from pref_assets.settings import Settings


def main(settings_file: str, partition_range: str, result_file: str) -> int:
    """Run the range; write the report; return 0 if the run succeeded."""
    settings = Settings.model_validate_json(Path(settings_file).read_text())
    start, end = partition_range.split("...")
    print(f"STARTED {partition_range}", flush=True)
    result = run_range(settings, start, end, raise_on_error=False)
    failures = [e.message for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    Path(result_file).write_text(json.dumps({"success": result.success, "failures": failures}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
