"""benchmarks/demo_robustness.py --regate: a finished run's gate decided again when only `promote` changed."""
import json
import subprocess
import sys
from pathlib import Path

from posttrain.data.arithmetic import problem
from posttrain.recipe import load
from posttrain.store import seal, write_json

ROOT = Path(__file__).resolve().parents[1]


def _finished_run(out: Path, seed: int) -> None:
    """A run directory as the benchmark leaves it: its recipe, held-out items and a sealed eval (SFT 0.55,
    RLVR 0.70: under a 0.75 gate, over a 0.65 one)."""
    import random

    out.mkdir(parents=True)
    recipe = load(ROOT / "recipes" / "tiny.yaml").override(
        promote={"min_accuracy": {"arithmetic": 0.75}, "registry": (out / "registry").as_uri()},
        tracking={"uri": f"sqlite:///{out / 'mlflow.db'}"})
    recipe = type(recipe).model_validate({**recipe.model_dump(), "seed": seed})
    (out / "recipe.yaml").write_text(recipe.to_yaml())
    rng = random.Random(0)
    rows = [problem(rng, 3, "add", "en") for _ in range(20)]
    (out / "data").mkdir()
    (out / "data" / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def model(right: int) -> dict:
        return {"score": right / 20, "n": 20, "ci95": [0.0, 1.0], "outcomes": [1.0] * right + [0.0] * (20 - right)}

    scores = {"candidate": "rlvr", "baseline": "base", "promoted": None, "models": ["base", "sft", "rlvr"],
              "benchmarks": {"arithmetic": {"base": model(0), "sft": model(11), "rlvr": model(14)}}}
    (out / "eval").mkdir()
    write_json(out / "eval" / "scores.json", scores)
    seal(out / "eval", "eval", recipe.digest())
    (out / "rlvr").mkdir()
    (out / "rlvr" / "model.safetensors").write_bytes(b"weights")
    seal(out / "rlvr", "rlvr", recipe.digest())


def _regate(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo_robustness.py"), "--seeds", "4",
                           "--settings", "avx2:1", "--out", str(root), "--regate", *extra],
                          capture_output=True, text=True, cwd=ROOT)


def test_regate_decides_the_gate_again_under_the_current_promote_section(tmp_path):
    _finished_run(tmp_path / "seed4-avx2-1", seed=4)
    done = _regate(tmp_path, "--set", 'promote.min_accuracy={"arithmetic": 0.65}', "--set",
                   'promote.model_registry="none"')
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "seed4-avx2-1" / "result.json").read_text())
    assert result["gate"] == {"passed": True, "reasons": []}
    assert result["arithmetic"]["rlvr"]["score"] == 0.7 and result["kernel"] == "AVX2"
    assert "| 4 | avx2:1 (AVX2) |" in done.stdout and "| PASS |" in done.stdout
    assert list((tmp_path / "seed4-avx2-1" / "registry" / "tiny").iterdir())  # the passing model, registered


def test_regate_refuses_when_more_than_promote_changed(tmp_path):
    _finished_run(tmp_path / "seed4-avx2-1", seed=4)
    epochs = load(ROOT / "recipes" / "tiny.yaml").sft.epochs + 1  # anything but the run's own value
    done = _regate(tmp_path, "--set", f"sft.epochs={epochs}")
    assert done.returncode != 0 and "differs from this run's in more than promote" in done.stderr
    assert not (tmp_path / "seed4-avx2-1" / "result.json").exists()


def test_regate_refuses_a_recipe_that_is_not_the_one_the_eval_used(tmp_path):
    run = tmp_path / "seed4-avx2-1"
    _finished_run(run, seed=4)
    (run / "recipe.yaml").write_text((run / "recipe.yaml").read_text().replace("seed: 4", "seed: 5"))
    done = _regate(tmp_path)
    assert done.returncode != 0 and "not the recipe the run's eval stage used" in done.stderr
