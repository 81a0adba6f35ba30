"""recipes/tulu3-8b.yaml end to end through kfp.local on CPU. Changed: the three dataset paths (fixtures in the
published schemas), model.base (a tiny Llama whose tokenizer has no chat template), sizes, and what a CPU
without network needs (no DeepSpeed, offline benchmark copies and our own eval engine instead of Hub names and
lm-eval on vLLM, no published baselines to download, local bubblewrap for code, a local registry,
no tracking)."""
from pathlib import Path

import pytest
from tulu3_fixtures import fixture_texts, preference_rows, rlvr_rows, save_tiny_llama, sft_rows, write_jsonl

from posttrain.models.chat_templates import TULU
from posttrain.pipelines import local
from posttrain.recipe import load
from posttrain.store import read_jsonl

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
MIXTURES = {"tulu-3-sft-mixture": sft_rows, "tulu-3-8b-preference-mixture": preference_rows,
            "rlvr-gsm-math-if": rlvr_rows}


def _recipe(tmp_path: Path):
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    sources = [s.model_dump() | {"path": write_jsonl(tmp_path / f"{s.name}.jsonl", MIXTURES[s.name](36))}
               for s in recipe.data.sources]
    assert [s["path"] for s in sources] != [s.path for s in recipe.data.sources]  # all three replaced
    micro = {"deepspeed": "none", "batch_size": 8, "gradient_accumulation_steps": 1, "max_length": 192}
    return recipe.override(
        model={"base": save_tiny_llama(tmp_path / "llama-bare", fixture_texts())},
        data={"sources": sources},
        sft={**micro, "epochs": 1},
        preference={"heldout_fraction": 0.25},
        dpo=micro,
        rlvr={"deepspeed": "none", "num_generations": 4, "prompts_per_rollout": 4, "batch_size": 16,
              "gradient_accumulation_steps": 1, "max_steps": 3, "max_completion_length": 8},
        eval={"benchmarks": ["humaneval"], "hf_datasets": {}, "max_new_tokens": 4, "max_prompt_tokens": 128,
              "engine": "registry", "protocol_sampling": False, "baselines": {}, "counterparts": {}},
        sandbox={"url": None},  # local bubblewrap instead of the cluster's code-execution service
        # no tracking instead of the cluster's server (tracked runs: test_tracking.py): each task saves MLflow's
        # import and store, ~7 s
        tracking={"backend": "none"},
        promote={"min_accuracy": {"humaneval": 0.0}, "min_gain_over_base": -1.0,
                 "registry": (tmp_path / "registry").as_uri(), "model_registry": "none"},
    )


def test_tulu3_8b_recipe_runs_end_to_end_on_fixtures(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    recipe = _recipe(tmp_path)
    report = local.run(recipe, tmp_path / "run")
    stages = {s["stage"]: s for s in report["stages"]}
    assert stages["data"]["summary"]["rows"] == {"heldout": 0, "heldout_ifeval": 0, "sft": 36, "preference": 0,
                                                 "rlvr": 36, "preference_pairs": 36}

    # the Tülu template was set on a tokenizer that had none, and SFT trained with it
    assert AutoTokenizer.from_pretrained(recipe.model.base).chat_template is None
    tokenizer = AutoTokenizer.from_pretrained(stages["sft"]["path"])
    assert tokenizer.chat_template == TULU
    masked = expected = 0
    for row in read_jsonl(Path(stages["data"]["path"]) / "sft.jsonl"):
        encoded = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
        answers = [m["content"] + tokenizer.eos_token for m in row["messages"] if m["role"] == "assistant"]
        expected += sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        masked += sum(encoded["assistant_masks"])
        kept = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
        assert tokenizer.decode(kept) == "".join(answers)
    print(f"loss mask: {masked} assistant tokens of {expected} counted")
    assert masked == expected > 0

    # DPO trained on the released pairs (no on-policy prompts in this recipe)
    assert stages["preference"]["summary"]["by_origin"] == {"source": 36}
    dpo = stages["dpo"]["summary"]
    assert dpo["pairs"] == 27 and dpo["pairs_by_origin"] == {"source": 27} and dpo["steps"] == 4

    # RLVR scored rows of every kind of the mixture with its own verifier
    rlvr = stages["rlvr"]["summary"]
    assert rlvr["steps"] == 3
    assert all(rlvr["by_dataset"].get(f"{kind}/scored", 0) > 0 for kind in ("gsm8k", "MATH", "ifeval")), rlvr
    assert report["candidate"] == "rlvr" and report["gate"]["passed"]
