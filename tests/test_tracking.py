"""Experiment tracking and the registry service, against a real MLflow server on loopback."""
import pytest
from mlflow import MlflowClient

from posttrain.reporting import tracking
from posttrain.stages import promote
from conftest import ROOT
from test_promote import RECIPE, _stage_dirs

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)


def _runs(url: str, experiment: str) -> dict:
    client = MlflowClient(url)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=100)
    return {run.info.run_name: run for run in found}


def test_preflight_stops_on_a_server_that_does_not_answer():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recipe = RECIPE.override(tracking={"uri": f"http://127.0.0.1:{port}"})
    with pytest.raises(tracking.TrackingError, match=rf"recipe.tracking.uri: MLflow at http://127.0.0.1:{port} is not"):
        tracking.preflight(recipe)
    with pytest.raises(tracking.TrackingError, match="recipe.tracking.uri: MLflow at nosuch://x is not usable"):
        tracking.preflight(RECIPE.override(tracking={"uri": "nosuch://x"}))


def test_promoting_twice_moves_the_alias_once_and_never_rewrites_a_version(mlflow_server, tmp_path):
    recipe = RECIPE.override(tracking={"uri": mlflow_server}, promote={"model_registry": "mlflow"})
    registry = (tmp_path / "registry").as_uri()
    client = MlflowClient(mlflow_server)

    model_dir, report_dir = _stage_dirs(tmp_path, 0.7)  # passes the gate
    with tracking.stage(recipe, "promote"):
        url = promote.register(recipe, model_dir, report_dir, registry)
    [first] = client.search_model_versions("name = 't'")
    assert client.get_model_version_by_alias("t", "champion").version == first.version == "1"
    assert first.tags["posttrain.entry_url"] == url and first.tags["posttrain.score.arithmetic"] == "0.7000"

    model_dir, report_dir = _stage_dirs(tmp_path, 0.3, weights=b"w2")  # a different model, refused by the gate
    with pytest.raises(RuntimeError, match="refused by the gate"), tracking.stage(recipe, "promote"):
        promote.register(recipe, model_dir, report_dir, registry)
    assert [v.version for v in client.search_model_versions("name = 't'")] == ["1"]
    assert client.get_model_version_by_alias("t", "champion").version == "1"

    model_dir, report_dir = _stage_dirs(tmp_path / "again", 0.7)  # the first model once more: no new version
    with tracking.stage(recipe, "promote"):
        promote.register(recipe, model_dir, report_dir, registry)
    [again] = client.search_model_versions("name = 't'")
    assert again.version == "1" and again.source == first.source and again.tags == first.tags
    runs = _runs(mlflow_server, "t")
    assert runs["promote"].data.params["min_accuracy.arithmetic"] == "0.5"  # its recipe section


def test_a_stage_run_leaves_the_callers_tracking_uri_as_it_was(tmp_path, monkeypatch):
    """A stage called in-process (tests, benchmarks) must not point later runs at its tracker: a leaked URI made
    the next local run's preflight knock on a server that was gone."""
    import os

    from posttrain.reporting import tracking
    from posttrain.recipe import load

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe = load(ROOT / "recipes" / "tiny.yaml").override(tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    with tracking.stage(recipe, "data"):
        assert os.environ["MLFLOW_TRACKING_URI"] == recipe.tracking.uri
    assert "MLFLOW_TRACKING_URI" not in os.environ and tracking.RUN_ENV not in os.environ
