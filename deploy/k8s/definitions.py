"""Code location that runs every step as a Kubernetes Job (``dagster_k8s.k8s_job_executor``).

The executor's settings (secrets, volumes, resources) are in ``executor.yaml`` next to this file. The
pipeline's settings come from ``PREF_ASSETS_CONFIG`` (a ConfigMap in the cluster), exactly as in
``pref_assets.definitions``. Serve it from the image with ``dagster api grpc -f deploy/k8s/definitions.py``
(see values.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dagster_k8s import k8s_job_executor

from pref_assets.definitions import build_definitions
from pref_assets.settings import load_settings

EXECUTOR_CONFIG_FILE = Path(__file__).with_name("executor.yaml")


def load_executor_config(path: Path = EXECUTOR_CONFIG_FILE) -> dict[str, Any]:
    """Return the ``execution.config`` block of the run config in ``path``."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict(document["execution"]["config"])


K8S_EXECUTOR = k8s_job_executor.configured(load_executor_config(), name="k8s_steps")

defs = build_definitions(load_settings(), executor=K8S_EXECUTOR)
