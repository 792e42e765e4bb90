"""``preference_dataset``: every batch's final pairs in one set, with a dataset card, published to the Hub.

The card's body is a mapping of sections (``core/card.py``). To add one, write a function taking the settings, the
storage folder and the published pairs, and returning ``{title: markdown}`` (empty when it has nothing to say), and
add it to ``CARD_SECTIONS``; its sections follow the built-in ones, in that order.
"""

import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from pref_assets.core.card import CardFacts, CardJudge, render_card
from pref_assets.core.paths import contained_path
from pref_assets.core.rows import PreferenceRow, column_docs
from pref_assets.core.rubric import RUBRIC_VERSION
from pref_assets.defs import card_sections, schemas
from pref_assets.defs.jobs import config_file, config_identity, source_description
from pref_assets.defs.stages.common import FOLLOW_UPSTREAM, backfill_policy
from pref_assets.export import PAIR_COLUMNS, collect_pairs, partition_files, to_layout
from pref_assets.hub_upload import publishing, push, write_local
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
        # with the follow_upstream sensor on, final pairs rebuilt on their own are republished too
        automation_condition=FOLLOW_UPSTREAM,
        group_name="publish",
        description="The final preference set of every materialized batch, with a dataset card; pushed to the "
        "Hugging Face Hub when publish.repo_id and a token are set, written locally in any case.",
    )
    def preference_dataset(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        base = Path(settings.storage_dir)
        with publishing(contained_path(base, "published", what="folder"), private=settings.private_files) as out_dir:
            pairs = collect_pairs(base, publish.asset)
            pairs = pairs if pairs.height else _empty_pairs()
            rows = _all_rows(base / publish.asset)
            sections = [section(settings, base, pairs) for section in CARD_SECTIONS]
            card = render_card(card_facts(settings, pairs, rows, {k: v for s in sections for k, v in s.items()}))
            write_local(pairs, card, out_dir, publish.layout, private=settings.private_files)
        pushed, where = push(out_dir, publish.repo_id, hub.token, private=publish.private)
        context.log.info(where)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(pairs.height),
                "local_copy": dg.MetadataValue.path(str(out_dir.resolve())),
                "hub": dg.MetadataValue.text(where),
                "pushed": dg.MetadataValue.bool(pushed),
                "card": dg.MetadataValue.md(card.split("\n---\n", 1)[-1]),
                "pairs_by_source": dg.MetadataValue.json(_sources(pairs)),
                "configuration": dg.MetadataValue.json(config_identity(settings, config_file())),
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


def _empty_pairs() -> pl.DataFrame:
    """Return a set of no pairs with the published columns."""
    frame = schemas.to_frame([], PreferenceRow).with_columns(batch=pl.lit(None, pl.String))
    return frame.select([*PAIR_COLUMNS, "pair_source", "batch"])


def _all_rows(folder: Path) -> pl.DataFrame:
    files = partition_files(folder)
    return pl.concat([pl.read_parquet(f, columns=["status"]) for f in files]) if files else pl.DataFrame()


def review_section(settings: Settings, base: Path, pairs: pl.DataFrame) -> dict[str, str]:
    """Return the "Human review" section: how many of the published pairs reviewers decided, and where."""
    del base  # the pairs say it all
    human = _sources(pairs).get("human", 0)
    if settings.publish.asset != "preference_pairs":
        return {"Human review": "Not used: this set is the judge's pairs (`publish.asset: dpo_pairs`)."}
    where = f"in Argilla (dataset `{settings.argilla.dataset}`)" if settings.argilla.url else "(no Argilla set up)"
    return {"Human review": f"{human} of {pairs.height} pairs were decided by reviewers {where}; the rest by the "
            "judge. A pair reviewers decided follows their ratings or ranking of the answers."}  # fmt: skip


# Sections added to the dataset card after the built-in ones: each takes the settings, the storage folder and the
# published pairs, and returns {title: markdown}.
CARD_SECTIONS: list[Callable[[Settings, Path, pl.DataFrame], Mapping[str, str]]] = [
    review_section,
    *card_sections.SECTIONS,
]


def _sources(pairs: pl.DataFrame) -> dict[str, int]:
    if "pair_source" not in pairs.columns:
        return {"judge": pairs.height} if pairs.height else {}
    return dict(Counter(pairs["pair_source"].to_list()))


def card_features(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Return the ``dataset_info.features`` of ``frame`` as the Hub reads them (the ``datasets`` library's YAML)."""
    import datasets
    from datasets.info import DatasetInfo, DatasetInfosDict
    from huggingface_hub import DatasetCardData

    data = DatasetCardData()
    info = DatasetInfo(features=datasets.Features.from_arrow_schema(frame.to_arrow().schema))
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return list(data.to_dict()["dataset_info"]["features"])


def card_facts(settings: Settings, pairs: pl.DataFrame, rows: pl.DataFrame, sections: Mapping[str, str]) -> CardFacts:
    """Return what the card states: the configuration's models, judges (each with its aspects), pair policy and
    source, counted against the published ``pairs`` and the stage's status ``rows``; ``sections`` follow."""
    policy = settings.pairs
    publish = settings.publish
    rejected = "the lowest-scored answer" if policy.rejected == "lowest" else "a random lower-scored answer"
    layout = to_layout(pairs, publish.layout)
    return CardFacts(
        title=publish.repo_id or "pref-assets preference set",
        generators=[(g.name, g.model) for g in settings.generators],
        judges=[CardJudge(j.name, j.model, j.aspects) for j in settings.panel],
        pair_policy=f"chosen is the highest-scored answer, rejected {rejected}, minimum margin "
        f"{policy.min_margin}; prompts whose answers all tie give no pair.",
        layout=publish.layout,
        pairs=pairs.height,
        prompts=rows.height,
        pair_sources=_sources(pairs),
        batches=sorted(pairs["batch"].unique().to_list()) if pairs.height else [],
        rubric_version=RUBRIC_VERSION,
        source=source_description(settings),
        license=publish.license,
        language=publish.language,
        features=card_features(layout),
        extra_sections=sections,
    )
