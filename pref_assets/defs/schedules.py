"""A schedule that works through the prompt source: each tick runs the next batches not yet materialized."""

import dagster as dg

SCHEDULE_NAME = "next_batches"


def build_next_batches_schedule(
    job_name: str, partitions: dg.PartitionsDefinition, *, cron: str, batches_per_tick: int
) -> dg.ScheduleDefinition:
    """Return a schedule (stopped by default) that requests runs for unmaterialized batches, in order."""

    @dg.schedule(
        name=SCHEDULE_NAME,
        cron_schedule=cron,
        job_name=job_name,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Every tick ({cron}), run the next {batches_per_tick} batches whose dpo_pairs are not "
        "materialized yet. Turn it on in the UI (or `dagster schedule start`) to process a source unattended.",
    )
    def next_batches(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        done = context.instance.get_materialized_partitions(dg.AssetKey("dpo_pairs"))
        todo = [k for k in partitions.get_partition_keys(dynamic_partitions_store=context.instance) if k not in done]
        if not todo:
            return dg.SkipReason("every batch is materialized")
        tick = context.scheduled_execution_time.isoformat()
        return [dg.RunRequest(run_key=f"{key}@{tick}", partition_key=key) for key in todo[:batches_per_tick]]

    return next_batches
