"""Registry services people deploy from: MLflow's Model Registry, or Kubeflow Model Registry.

Our create-only store (`posttrain.registry`) stays the source of truth. After it holds an entry, the promote
stage registers a version here that points to the entry (its URL, the model's sha256 and the lineage as
tags) and moves the recipe's alias (`champion`) to it. The same model registered twice is one version; a
version is never rewritten (MLflow numbers them; Kubeflow's are named by the model's sha256 prefix).
"""
from __future__ import annotations

import json
from pathlib import Path

from posttrain.recipe import Recipe


class ModelRegistryError(RuntimeError):
    """The registry service refused or could not be reached; the message names it."""


def register(recipe: Recipe, entry: dict, run_id: str | None = None) -> dict | None:
    """Register the store entry `entry` in the recipe's registry service and move its alias there."""
    kind = recipe.promote.model_registry
    if kind == "none":
        return None
    if kind == "kubeflow":
        return _kubeflow(recipe, entry)
    return _mlflow(recipe, entry, run_id)


def _tags(recipe: Recipe, entry: dict) -> dict[str, str]:
    lineage = json.dumps(entry["lineage"], sort_keys=True)
    return {"posttrain.entry_url": entry["url"], "posttrain.model_sha256": entry["model_sha256"],
            "posttrain.recipe_sha256": entry["recipe_sha256"], "posttrain.store_version": entry["version"],
            "posttrain.lineage": lineage[:5000],
            **{f"posttrain.score.{name}": f"{score:.4f}" for name, score in entry["scores"].items()}}


def _mlflow(recipe: Recipe, entry: dict, run_id: str | None) -> dict:
    from mlflow.exceptions import MlflowException

    from posttrain.reporting import tracking

    client, target = tracking.mlflow_client(recipe)
    name, alias = recipe.name, recipe.promote.alias
    try:
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_registered_model(name, description=f"posttrain recipe {name}; versions point to "
                                                              "entries of the create-only registry")
        found = client.search_model_versions(f"name = '{name}' and tags.`posttrain.model_sha256` = "
                                             f"'{entry['model_sha256']}'")
        if found:  # the same model again: its version stands, nothing is rewritten
            version = found[0]
        else:
            version = client.create_model_version(name, source=_source(client, entry, run_id), run_id=run_id,
                                                  tags=_tags(recipe, entry),
                                                  description=f"posttrain entry {entry['url']}")
        client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        raise ModelRegistryError(f"recipe.promote.model_registry: MLflow at {target} refused {name}: "
                                 f"{str(exc).splitlines()[0][:300]}") from None
    print(f"promote: MLflow model {name} version {version.version} ({alias}) -> {entry['url']}")
    return {"service": "mlflow", "name": name, "version": str(version.version), "alias": alias}


def _source(client, entry: dict, run_id: str | None) -> str:
    """The entry's URL; a tracking server refuses local paths as sources, so for a `file://` store the
    version's source is the promote run's copy of `entry.json` (which holds the URL) instead."""
    if not entry["url"].startswith("file://") or run_id is None:
        return f"{entry['url']}/model"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "entry.json"
        path.write_text(json.dumps(entry, indent=2))
        client.log_artifact(run_id, str(path), "registry-entry")
    return f"runs:/{run_id}/registry-entry"


def _kubeflow(recipe: Recipe, entry: dict) -> dict:
    """Kubeflow Model Registry (the `model-registry` client): a model version named by the store's version,
    its artifact pointing at the entry's model, its custom properties carrying the lineage. The service has
    no aliases, so the alias is a custom property of the registered model, `alias.<name>` = the version."""
    try:
        from model_registry import ModelRegistry
    except ImportError:
        raise ModelRegistryError("recipe.promote.model_registry kubeflow needs the `model-registry` package "
                                 "(pip install model-registry)") from None
    from urllib.parse import urlsplit

    cfg = recipe.promote
    url = urlsplit(cfg.model_registry_url)
    try:
        service = ModelRegistry(f"{url.scheme}://{url.hostname}", url.port or (443 if url.scheme == "https" else 80),
                                author="posttrain", is_secure=url.scheme == "https")
        # The client refuses a version name twice; the same model again keeps its version as it is.
        if (service.get_registered_model(recipe.name) is None
                or service.get_model_version(recipe.name, entry["version"]) is None):
            service.register_model(recipe.name, f"{entry['url']}/model", version=entry["version"],
                                   model_format_name="safetensors", model_format_version="1",
                                   metadata=_tags(recipe, entry))
        model = service.get_registered_model(recipe.name)
        model.custom_properties = {**(model.custom_properties or {}), f"alias.{cfg.alias}": entry["version"]}
        service.update(model)
    except Exception as exc:  # the client raises its own and aiohttp errors
        raise ModelRegistryError(f"recipe.promote.model_registry_url: Kubeflow Model Registry at "
                                 f"{cfg.model_registry_url} refused {recipe.name}: {exc}") from None
    print(f"promote: Kubeflow model {recipe.name} version {entry['version']} -> {entry['url']}")
    return {"service": "kubeflow", "name": recipe.name, "version": entry["version"], "alias": cfg.alias,
            "id": getattr(model, "id", None)}
