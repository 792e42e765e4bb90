"""What the step layer of the retry page (pref_assets/clients/retry.py) relies on in Dagster."""

from __future__ import annotations

import dagster as dg

from pref_assets.defs.stages.common import LLM_RETRY


def _runs_of(fail: object) -> int:
    runs: list[int] = []

    # the LLM steps' policy without its waits
    no_wait = dg.RetryPolicy(max_retries=LLM_RETRY.max_retries)

    @dg.asset(check_specs=[dg.AssetCheckSpec("ledger", asset="step", blocking=True)], retry_policy=no_wait)
    def step() -> dg.MaterializeResult:
        runs.append(1)
        if isinstance(fail, BaseException):
            raise fail
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name="ledger", passed=False)])

    assert not dg.materialize([step], raise_on_error=False).success
    return len(runs)


def test_a_step_retry_repeats_only_what_no_lower_layer_handled() -> None:
    assert _runs_of(None) == 1  # a failed ledger check (rows failed after the request layer's attempts)
    assert _runs_of(dg.Failure("endpoint parked", allow_retries=False)) == 1
    assert _runs_of(OSError("disk full")) == 1 + LLM_RETRY.max_retries
