"""`model.chat_template`: Tülu's template set on a base tokenizer that has none; a tokenizer SFT cannot train with
is refused by the base stage, before any training, naming the field."""
import pytest
from tulu3_fixtures import fixture_texts, preference_rows, save_tiny_llama, sft_rows, write_jsonl

from posttrain.models.chat_templates import TULU
from posttrain.recipe import Recipe
from posttrain.stages import base, data


@pytest.fixture(scope="module")
def bare_llama(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("bare") / "llama", fixture_texts())


@pytest.fixture
def data_dir(tmp_path):
    recipe = Recipe(name="t").override(data={"sft_rows": 0, "preference_prompts": 0, "rlvr_prompts": 0,
                                             "heldout_rows": 0, "decontamination": {"eval_sets": []},
                                             "sources": [{"name": "s", "path": write_jsonl(tmp_path / "s.jsonl",
                                                                                           sft_rows(8)), "rows": 8}]},
                                       eval={"benchmarks": ["humaneval"]})
    data.run(recipe, tmp_path / "data")
    return tmp_path / "data"


def _recipe(bare_llama, template):
    return Recipe(name="t").override(model={"base": bare_llama, "chat_template": template})  # default data


def test_a_tokenizer_without_template_is_refused_naming_the_field(bare_llama, data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"recipe.model.chat_template: the tokenizer of .* has no chat template"):
        base.run(_recipe(bare_llama, None), data_dir, tmp_path / "base")
    no_markers = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match=r"recipe.model.chat_template: .* no \{% generation %\} markers"):
        base.run(_recipe(bare_llama, no_markers), data_dir, tmp_path / "base2")
    with pytest.raises(ValueError, match="recipe.model.chat_template: unknown template 'chatml'"):
        base.run(_recipe(bare_llama, "chatml"), data_dir, tmp_path / "base3")
    assert not (tmp_path / "base" / "manifest.json").exists()


def test_tulu_template_is_applied_and_masks_exactly_the_assistant_tokens(bare_llama, data_dir, tmp_path):
    from transformers import AutoTokenizer

    base.run(_recipe(bare_llama, "tulu"), data_dir, tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    assert tokenizer.chat_template == TULU
    conversations = [r["messages"] for r in sft_rows(12)] + [p["chosen"] for p in preference_rows(4)]
    text = tokenizer.apply_chat_template(conversations[0], tokenize=False)
    assert text.startswith("<|system|>\nYou are a helpful assistant.\n<|user|>\n") and "<|assistant|>\n" in text
    for messages in conversations:
        encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
        mask, ids = encoded["assistant_masks"], encoded["input_ids"]
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        expected = sum(len(tokenizer(a + tokenizer.eos_token, add_special_tokens=False)["input_ids"]) for a in answers)
        assert sum(mask) == expected  # counted: every assistant token and its end token, nothing else
        masked = tokenizer.decode([t for t, m in zip(ids, mask) if m])
        assert masked == "".join(a + tokenizer.eos_token for a in answers)
