"""Kubeflow Model Registry through the real `model-registry` client, against a fake REST API on loopback."""
import pytest

from fake_model_registry import FakeModelRegistry
from posttrain.stages import promote
from test_promote import RECIPE, _stage_dirs


def test_kubeflow_registry_gets_one_version_per_model_and_the_alias(tmp_path):
    fake = FakeModelRegistry()
    recipe = RECIPE.override(promote={"model_registry": "kubeflow", "model_registry_url": fake.start()})
    registry = (tmp_path / "registry").as_uri()

    model_dir, report_dir = _stage_dirs(tmp_path, 0.7)
    url = promote.register(recipe, model_dir, report_dir, registry)
    promote.register(recipe, model_dir, report_dir, registry)  # the same model again: no second version
    [version] = fake.versions.values()
    [artifact] = fake.artifacts.values()
    [model] = fake.models.values()
    assert artifact["uri"] == f"{url}/model" and version["name"] == url.rsplit("/", 1)[1]
    assert version["customProperties"]["posttrain.entry_url"]["string_value"] == url
    assert model["customProperties"]["alias.champion"]["string_value"] == version["name"]

    model_dir, report_dir = _stage_dirs(tmp_path, 0.3, weights=b"w2")  # refused by the gate: nothing moves
    with pytest.raises(RuntimeError, match="refused by the gate"):
        promote.register(recipe, model_dir, report_dir, registry)
    assert len(fake.versions) == 1 and model["customProperties"]["alias.champion"]["string_value"] == version["name"]


def test_an_unreachable_kubeflow_registry_is_named():
    import socket

    from posttrain import model_registry

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recipe = RECIPE.override(promote={"model_registry": "kubeflow", "model_registry_url": f"http://127.0.0.1:{port}"})
    entry = {"url": "file:///r/t/v", "version": "v", "model_sha256": "0" * 64, "recipe_sha256": "1" * 64,
             "lineage": {}, "scores": {}}
    with pytest.raises(model_registry.ModelRegistryError,
                       match=rf"recipe.promote.model_registry_url: Kubeflow Model Registry at http://127.0.0.1:{port}"):
        model_registry.register(recipe, entry)
