"""The six batch-partitioned pipeline assets, one module each; ``build_assets`` returns them in chain order."""

from __future__ import annotations

import dagster as dg

from pref_assets.defs.stages.common import Stage
from pref_assets.defs.stages.generations import build_generations
from pref_assets.defs.stages.grouped import build_grouped
from pref_assets.defs.stages.pairs import build_pairs
from pref_assets.defs.stages.prompts import build_prompts
from pref_assets.defs.stages.ratings import build_ratings
from pref_assets.defs.stages.records import build_records
from pref_assets.settings import Settings

BUILDERS = (build_prompts, build_generations, build_grouped, build_ratings, build_pairs, build_records)


def build_assets(settings: Settings, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Return the six assets for ``settings``, all partitioned by ``partitions``."""
    stage = Stage(settings, partitions)
    return [build(stage) for build in BUILDERS]
