"""Code location that runs the project's jobs on Celery workers (``dagster_celery.celery_executor``).

Every step of ``preference_job`` becomes a Celery task on the ``dagster`` queue; any worker started with
``deploy/celery/worker.yaml`` picks it up. The broker and result backend come from the environment:

    DAGSTER_CELERY_BROKER_URL=redis://HOST:6379/0
    DAGSTER_CELERY_BACKEND_URL=redis://HOST:6379/1

Load it with ``dagster dev -f deploy/celery/definitions.py`` or ``deploy/celery/workspace.yaml``. The
pipeline's settings come from ``PREF_ASSETS_CONFIG`` exactly as in ``pref_assets.definitions``; the
launching process and every worker must see the same settings, the same instance (``DAGSTER_HOME``, a
PostgreSQL one when workers run on other hosts) and the same ``storage_dir``.
"""

from __future__ import annotations

from dagster_celery import celery_executor

from pref_assets.definitions import build_definitions
from pref_assets.settings import load_settings

BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
BACKEND_ENV = "DAGSTER_CELERY_BACKEND_URL"

CELERY_EXECUTOR = celery_executor.configured(
    {"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}},
    name="celery_redis",
)


defs = build_definitions(load_settings(), executor=CELERY_EXECUTOR)
