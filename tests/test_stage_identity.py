"""A stage reruns only when what it reads changes (issue 28).

Each stage's task takes its view of the recipe (posttrain.stage_table `reads`, components/views.py) as its
`recipe` parameter; KFP's cache and kfp.local's key a task by its parameters and input artifacts, so a task
whose view and inputs are unchanged is reused (the kfp.local rerun: test_pipeline_local.py).
"""
import json
from pathlib import Path

import yaml

from posttrain.pipelines import tulu3
from posttrain.recipe import loads, shipped
from posttrain.stage_table import NAMES, STAGES

# The stages before rlvr that read a view. The plan reads the whole recipe: it re-plans every stage on any change
# (seconds, no output on disk), as it must when a change could make a later stage stop fitting.
BEFORE_RLVR = tuple(name for name in NAMES[: NAMES.index("rlvr")] if "*" not in STAGES[name].reads)


def _tasks(recipe, path: Path) -> dict:
    """Every task of the compiled pipeline, the ones inside its conditions too."""
    tulu3.compile(recipe, path)
    ir = next(yaml.safe_load_all(path.read_text()))
    dags = [ir["root"], *(c for c in ir["components"].values() if "dag" in c)]
    return {name: task for dag in dags for name, task in dag["dag"]["tasks"].items()}


def test_changing_an_rlvr_field_leaves_the_earlier_tasks_and_their_views_unchanged(tmp_path):
    from posttrain.components.views import views

    recipe = shipped("tulu3-8b.yaml")
    changed = recipe.override(rlvr={"clip": 0.13, "max_steps": recipe.rlvr.max_steps + 1})
    before, after = _tasks(recipe, tmp_path / "a.yaml"), _tasks(changed, tmp_path / "b.yaml")
    assert before == after  # the recipe reaches the tasks at run time, through the views task only
    for name in NAMES:
        source = before[name]["inputs"]["parameters"]["recipe"]
        if "*" in STAGES[name].reads:  # gate and promote: the whole recipe, the registry entry's lineage
            assert source["componentInputParameter"] in ("recipe", "pipelinechannel--recipe")
        else:
            assert source == {"taskOutputParameter": {"outputParameterKey": name, "producerTask": "views"}}
        wanted = {key: up for key, up in STAGES[name].inputs.items()}
        given = {key: spec.get("taskOutputArtifact", {}).get("producerTask") or spec["componentInputArtifact"]
                 for key, spec in before[name]["inputs"].get("artifacts", {}).items()}
        assert {key: up.removeprefix("pipelinechannel--").split("-")[0] for key, up in given.items()} == wanted

    # What the views task hands each stage at run time: the earlier stages' views do not change, rlvr's does.
    old = dict(zip(tulu3.VIEWED, views.python_func(recipe=recipe.to_yaml())))
    new = dict(zip(tulu3.VIEWED, views.python_func(recipe=changed.model_dump_json())))
    assert [name for name in tulu3.VIEWED if old[name] != new[name]] == ["rlvr"]
    for name in BEFORE_RLVR:
        assert old[name] == new[name], name
        assert loads(old[name]).digest() == loads(new[name]).digest()  # manifests' and checkpoints' key
    assert json.loads(new["rlvr"])["recipe"]["rlvr"]["clip"] == 0.13
    assert loads(new["rlvr"]).rlvr.clip == 0.13


def test_a_view_keeps_what_its_stage_reads_and_defaults_the_rest():
    recipe = shipped("tulu3-8b.yaml")
    view = recipe.view(("sft", "cluster.sft"))
    assert view.sft == recipe.sft and view.cluster.sft == recipe.cluster.sft
    assert view.rlvr == type(recipe.rlvr)() and view.cluster.rlvr == type(recipe.cluster.rlvr)()
    assert view.name == recipe.name and recipe.view(("*",)) == recipe
    # A check across sections runs where the view keeps both: heldout_rows 0 with arithmetic scored is refused
    # in a whole recipe, and is no error in a view of the data section alone (eval there is a default).
    bare = recipe.override(data={"heldout_rows": 0}, eval={"benchmarks": ["humaneval"]})
    assert bare.view(("data",)).data.heldout_rows == 0


def _sealed(out: Path) -> dict[str, set[str]]:
    """stage -> its sealed output directories under the run's kfp root."""
    found: dict[str, set[str]] = {}
    for manifest in (out / "kfp").rglob("manifest.json"):
        found.setdefault(json.loads(manifest.read_text())["stage"], set()).add(str(manifest.parent))
    return found
