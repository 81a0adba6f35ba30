"""No dead knobs, and each stage's identity is what it reads (issue 28).

Every stage runs in one process on the micro settings (benchmarks/direct.py: the components' calls, the
training stages through the launcher) with the recipe instrumented (posttrain.recipe.reads): each field a stage
reads is recorded. Then
- every field the shipped recipes set is read by some stage, or by the code that builds the cluster spec
  (pipelines/resources.py, compiled here under the same instrument), or is in NOT_ON_CPU with its reason;
- each stage's declared `reads` (posttrain.stage_table) covers what it read, and it read each entry it declares.
"""
import contextlib
import sys
from pathlib import Path

import pytest

from posttrain import sandbox
from posttrain.recipe import shipped
from posttrain.recipe.reads import recording, set_in
from posttrain.stage_table import READ_BY_EVERY_TASK, STAGES
from posttrain.training.checkpoints import ENV as CHECKPOINTS_ENV

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import direct  # noqa: E402

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)

SHIPPED = ("tiny.yaml", "tulu3-8b.yaml")

# Set in a shipped recipe, read only where this test cannot go: field -> where it is read, and why not here.
NOT_ON_CPU = {
    "cluster.sft.accelerator": "training/trainjob.py: sft trains on several nodes in tulu3-8b.yaml, so the "
                               "TrainJob's pods ask for the GPUs, not the pipeline's launcher pod "
                               "(tests/test_trainjob.py); a TrainJob needs a cluster",
    "model.chat_template": "stages/base.py sets it on a copied Hub or path model's tokenizer; the tiny model "
                           "builds its own (tests/test_chat_template.py)",
}

# issue 28: fields set in a shipped recipe that no stage reads today. The training-stage rewrite (branch
# "skeleton") wires them to their trainers; the lead empties this list after merging it. (rlvr.clip and
# rlvr.lr_scheduler are read, by PPO and GRPO respectively, so a field-level read cannot see that the other
# algorithm ignores them.)
KNOWN_DEAD_ISSUE_28: dict[str, str] = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """Every stage once on the micro settings (GRPO), then rlvr again with PPO; each under the instrument."""
    from conftest import micro

    out = tmp_path_factory.mktemp("stages")
    recipe = micro().override(promote={"registry": (out / "registry").as_uri(),
                                       "min_accuracy": {"arithmetic": 0.0}, "min_gain_over_base": -1.0})
    found: dict[str, set[str]] = {}

    @contextlib.contextmanager
    def around(stage, recipe):
        sandbox._runners.clear()  # one stage per process, as in the pipeline: no runner built by an earlier one
        with recording(recipe) as (copy, reads):
            yield copy
        found.setdefault(stage, set()).update(reads)

    with pytest.MonkeyPatch.context() as patch:  # as `posttrain run --local` sets them
        patch.setenv(CHECKPOINTS_ENV, str(out / "checkpoints"))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlflow.db'}")
        direct.run(recipe, out, around=around)
        from posttrain.training.launch import run_stage

        from posttrain.recipe.sections import GRPO_ONLY, RLVRSection

        ppo = {**{name: RLVRSection.model_fields[name].default for name in GRPO_ONLY}, "algorithm": "ppo"}
        with around("rlvr", recipe.override(rlvr=ppo)) as copy:
            run_stage("rlvr", copy, out / "dpo", out / "data", out / "rlvr-ppo")
    return {"reads": found, "out": out, "recipe": recipe}


@pytest.fixture(scope="module")
def compile_reads(tmp_path_factory) -> set[str]:
    """What compiling the pipeline reads: the cluster spec (resources, volumes, TrainJob settings)."""
    from posttrain.pipelines import tulu3

    found: set[str] = set()
    for name in SHIPPED:
        with recording(shipped(name)) as (copy, reads):
            tulu3.compile(copy, tmp_path_factory.mktemp("ir") / "tulu3.yaml")
        found |= reads
    return found


def _covered(path: str, reads: set[str]) -> bool:
    """A set leaf is read when it, a field under it (a tuple of sections) or the field holding it is read."""
    return any(r == path or r.startswith(path + ".") or path.startswith(r + ".") for r in reads)


def dead_knobs(stage_reads: dict[str, set[str]], compile_reads: set[str]) -> list[str]:
    read = set().union(*stage_reads.values(), compile_reads, READ_BY_EVERY_TASK)
    set_keys = set().union(*(set_in((ROOT / "recipes" / name).read_text()) for name in SHIPPED))
    return sorted(path for path in set_keys - set(NOT_ON_CPU) - set(KNOWN_DEAD_ISSUE_28)
                  if not _covered(path, read))


def test_every_field_a_shipped_recipe_sets_is_read(run, compile_reads):
    dead = dead_knobs(run["reads"], compile_reads)
    assert not dead, f"set in recipes/{{{','.join(SHIPPED)}}} but read by no stage: {dead}"


def test_the_allow_lists_hold_only_fields_that_are_not_read(run, compile_reads):
    read = set().union(*run["reads"].values(), compile_reads)
    assert not [p for p in (*NOT_ON_CPU, *KNOWN_DEAD_ISSUE_28) if _covered(p, read)]


def test_a_knob_a_stage_stops_reading_is_reported(run, compile_reads, monkeypatch, tmp_path):
    """Unplug one field: the gate compares gains with a literal instead of promote.min_gain_over_base."""
    from posttrain.stages import promote

    original = promote.gate

    def gate_with_a_literal(recipe, scores):
        section = recipe.promote
        kept = {name: getattr(section, name) for name in type(section).model_fields if name != "min_gain_over_base"}
        unplugged = recipe.model_copy(update={"promote": type(section).model_construct(**kept, min_gain_over_base=0.0)})
        return original(unplugged, scores)

    monkeypatch.setattr(promote, "gate", gate_with_a_literal)
    with recording(run["recipe"]) as (copy, reads):
        promote.decide(copy, run["out"] / "eval", tmp_path / "gate")
    assert dead_knobs({**run["reads"], "gate": reads}, compile_reads) == ["promote.min_gain_over_base"]


# Declared, and read only when the micro run's data holds what needs them: stage -> entry, and why.
READ_ON_OTHER_DATA = {("preference", "sandbox"): "the verifier judge runs programs for code prompts only; the "
                                                 "micro preference prompts are arithmetic",
                      ("rlvr", "sandbox"): "the code verifier runs programs for code prompts only; the micro RLVR "
                                           "prompts are arithmetic and instruction following"}


def _declared(path: str, reads: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + ".") for r in reads)


def test_each_stage_declares_what_it_reads(run):
    for name, reads in run["reads"].items():
        declared = STAGES[name].reads
        if "*" in declared:  # gate and promote take the whole recipe
            continue
        undeclared = sorted(p for p in reads - set(READ_BY_EVERY_TASK) if not _declared(p, declared))
        assert not undeclared, f"stage {name} reads {undeclared}, not in its stage_table reads {declared}"
        unread = [d for d in declared if not any(_declared(p, (d,)) for p in reads)
                  and (name, d) not in READ_ON_OTHER_DATA]
        assert not unread, f"stage {name} declares {unread} but read nothing of it"
