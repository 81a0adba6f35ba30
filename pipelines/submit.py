"""Start a run on a Kubeflow Pipelines endpoint with kfp.Client."""
from __future__ import annotations

import tempfile
from pathlib import Path

import kfp

from posttrain.pipelines import tulu3
from posttrain.recipe import Recipe


SERVICE_ACCOUNT = "posttrain-runner"  # manifests/base: may create, watch and delete TrainJobs, read pod logs


def submit(recipe: Recipe, host: str, experiment: str = "posttrain", run_name: str | None = None,
           namespace: str | None = None, existing_token: str | None = None,
           service_account: str = SERVICE_ACCOUNT) -> str:
    """Compile the pipeline for `recipe` and start it; returns the run id."""
    client = kfp.Client(host=host, namespace=namespace, existing_token=existing_token)
    with tempfile.TemporaryDirectory() as tmp:
        package = tulu3.compile(recipe, Path(tmp) / "tulu3.yaml")
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments={"recipe": recipe.model_dump_json()},
            run_name=run_name or f"{recipe.name}-{recipe.digest()[:8]}",
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
    return run.run_id
