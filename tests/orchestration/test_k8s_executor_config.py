"""deploy/k8s without a cluster: the code location loads with k8s_job_executor, executor.yaml is valid run
config for it, and the step Job it describes carries the secrets, volumes and resources."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import pytest
import yaml
from orchestration_services import DEPLOY

from pref_assets.definitions import JOB_NAME, build_definitions
from pref_assets.settings import load_settings
from pref_assets.testing.fake_pipeline import fake_settings, write_settings

pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed (the project's `scale` extra)")

from dagster_k8s import DagsterK8sJobConfig, construct_dagster_k8s_job, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig
from kubernetes.client import ApiClient

K8S = DEPLOY / "k8s"
IMAGE = "registry.example.com/pref-assets:0.1.0"


@pytest.fixture
def k8s_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """deploy/k8s/definitions.py, loaded by path as `dagster api grpc -f` would."""
    settings = write_settings(fake_settings("http://127.0.0.1:9/v1", tmp_path / "data"), tmp_path / "pref.yaml")
    monkeypatch.setenv("PREF_ASSETS_CONFIG", str(settings))
    spec = importlib.util.spec_from_file_location("pref_assets_k8s_definitions", K8S / "definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_config() -> dict[str, Any]:
    return yaml.safe_load((K8S / "executor.yaml").read_text())


def test_code_location_runs_the_job_on_the_configured_k8s_executor(k8s_module: ModuleType) -> None:
    job = k8s_module.defs.resolve_job_def(JOB_NAME)

    assert job.executor_def.name == "k8s_steps"
    dg.validate_run_config(job)  # the executor's config is fixed in code: no run config needed
    dg.Definitions.validate_loadable(k8s_module.defs)


def test_executor_yaml_is_valid_run_config_for_k8s_job_executor(k8s_module: ModuleType) -> None:
    plain = build_definitions(load_settings(), executor=k8s_job_executor)
    job = plain.resolve_job_def(JOB_NAME)

    processed = dg.validate_run_config(job, _run_config())

    assert processed["execution"]["k8s"]["env_secrets"] == ["pref-assets-secrets"]
    assert processed["execution"]["k8s"]["step_k8s_config"]["job_spec_config"]["backoff_limit"] == 0


def test_step_job_manifest_has_secrets_volumes_and_resources() -> None:
    config = _run_config()["execution"]["config"]
    context = K8sContainerContext(
        env_secrets=config["env_secrets"],
        env_vars=config["env_vars"],
        volumes=config["volumes"],
        volume_mounts=config["volume_mounts"],
        resources=config["resources"],
        labels=config["labels"],
        namespace=config["job_namespace"],
        image_pull_policy=config["image_pull_policy"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config["step_k8s_config"]),
    )
    job_config = DagsterK8sJobConfig(
        job_image=IMAGE, dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance"
    )

    manifest = ApiClient().sanitize_for_serialization(
        construct_dagster_k8s_job(
            job_config,
            args=["dagster", "api", "execute_step"],
            job_name="dagster-step-test",
            component="step_worker",
            user_defined_k8s_config=context.run_k8s_config,
        )
    )

    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert {"secretRef": {"name": "pref-assets-secrets"}} in container["envFrom"]
    assert {"name": "PREF_ASSETS_CONFIG", "value": "/opt/pref-assets/config/pref_assets.yaml"} in container["env"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/data", "/opt/pref-assets/config"}
    assert container["resources"]["limits"]["memory"] == "2Gi"
    volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
    assert volumes["pref-assets-data"]["persistentVolumeClaim"]["claimName"] == "pref-assets-data"
    assert manifest["spec"]["backoffLimit"] == 0


def test_configmap_settings_are_valid_and_keep_storage_on_the_shared_volume() -> None:
    from pref_assets.settings import Settings

    documents = list(yaml.safe_load_all((K8S / "manifests.yaml").read_text()))
    configmap = next(d for d in documents if d["kind"] == "ConfigMap")
    settings = Settings.model_validate(yaml.safe_load(configmap["data"]["pref_assets.yaml"]))
    mounts = {m["name"]: m["mount_path"] for m in _run_config()["execution"]["config"]["volume_mounts"]}

    assert configmap["metadata"]["name"] == "pref-assets-config"
    assert Path(settings.storage_dir).is_relative_to(mounts["pref-assets-data"])
    assert all(e.api_key_env for e in settings.endpoints)  # keys come from the Secret, never the file
