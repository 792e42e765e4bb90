"""``preference_dataset``: every batch's final pairs in one set, with a dataset card, published to the Hub."""

import os
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl

from pref_assets.core.card import CardFacts, render_card
from pref_assets.core.paths import contained_path
from pref_assets.core.rows import PreferenceRow, column_docs
from pref_assets.core.rubric import RUBRIC_VERSION
from pref_assets.defs.stages.common import backfill_policy
from pref_assets.export import collect_pairs, partition_files, to_layout
from pref_assets.hub_upload import push, write_local
from pref_assets.settings import Settings


class HubResource(dg.ConfigurableResource):
    """A Hugging Face token for publishing, from an environment variable (``dg.EnvVar``)."""

    token: str | None = None


def build_hub_resource(settings: Settings) -> HubResource:
    """Return the Hub resource; the token is read through ``dg.EnvVar`` when its variable exists."""
    name = settings.publish.token_env
    return HubResource(token=dg.EnvVar(name) if name in os.environ else None)


def build_publish_asset(settings: Settings, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """Return the asset that gathers and publishes the final set.

    It is partitioned like the pipeline so that one command runs a batch end to end: materializing
    any batch republishes the set of every batch materialized so far (a run covering several batches
    republishes once).
    """
    publish = settings.publish

    @dg.asset(
        deps=[publish.asset],
        partitions_def=partitions,
        backfill_policy=backfill_policy(settings),
        group_name="publish",
        description="The final preference set of every materialized batch, with a dataset card; pushed to the "
        "Hugging Face Hub when publish.repo_id and a token are set, written locally in any case.",
    )
    def preference_dataset(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        base = Path(settings.storage_dir)
        pairs = collect_pairs(base, publish.asset)
        card = render_card(_facts(settings, pairs, _all_rows(base / publish.asset)))
        out_dir = contained_path(base, "published", what="folder")
        out_dir = write_local(pairs, card, out_dir, publish.layout, private=settings.private_files)
        pushed, where = push(out_dir, publish.repo_id, hub.token, private=publish.private)
        context.log.info(where)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(pairs.height),
                "local_copy": dg.MetadataValue.path(str(out_dir.resolve())),
                "hub": dg.MetadataValue.text(where),
                "pushed": dg.MetadataValue.bool(pushed),
                "card": dg.MetadataValue.md(card.split("---", 2)[-1]),
                "dagster/column_schema": published_columns(to_layout(pairs.head(0), publish.layout)),
            }
        )

    return preference_dataset


def published_columns(frame: pl.DataFrame) -> dg.TableSchema:
    """Return the column schema of the published set, each column described as in the pairs it comes from."""
    docs = column_docs(PreferenceRow) | {
        "batch": "The batch the pair comes from.",
        "prompt": "The prompt (as messages in the trl-conversational layout).",
        "chosen": "The chosen answer (the whole conversation in the dpo layout).",
        "rejected": "The rejected answer (the whole conversation in the dpo layout).",
    }
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype), description=docs.get(name)) for name, dtype in frame.schema.items()]
    )


def _all_rows(folder: Path) -> pl.DataFrame:
    files = partition_files(folder)
    return pl.concat([pl.read_parquet(f, columns=["status"]) for f in files]) if files else pl.DataFrame()


def _facts(settings: Settings, pairs: pl.DataFrame, rows: pl.DataFrame) -> CardFacts:
    sources = Counter(pairs["pair_source"].to_list()) if "pair_source" in pairs.columns else Counter(judge=pairs.height)
    policy = settings.pairs
    rejected = "the lowest-scored answer" if policy.rejected == "lowest" else "a random lower-scored answer"
    return CardFacts(
        title=settings.publish.repo_id or "pref-assets preference set",
        generators=[(g.name, g.model) for g in settings.generators],
        judge=(settings.judge.name, settings.judge.model),
        aspects=settings.judge.aspects,
        pair_policy=f"chosen is the highest-scored answer, rejected {rejected}, minimum margin "
        f"{policy.min_margin}; prompts whose answers all tie give no pair.",
        layout=settings.publish.layout,
        pairs=pairs.height,
        prompts=rows.height,
        pair_sources=dict(sources),
        batches=sorted(pairs["batch"].unique().to_list()) if pairs.height else [],
        rubric_version=RUBRIC_VERSION,
        source=settings.source.repo_id or ", ".join(settings.source.paths) or "the embedded prompt set",
    )
