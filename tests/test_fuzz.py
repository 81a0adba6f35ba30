"""Malformed recipes and rows, generated: each one gets an error naming the field or row, never a traceback."""
import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posttrain.data.formats import RowError, problems, read_rows
from posttrain.recipe import Recipe, RecipeError, loads

from conftest import ROOT

TINY = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
RESOLVED = Recipe.model_validate(TINY).model_dump(mode="json")


def _leaves(data, prefix=()):
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "min_accuracy":
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,)


LEAVES = sorted(_leaves(RESOLVED))
NEVER_VALID = [{"bad": [1]}, [[{}]], {"nested": {"deeper": None}}]  # no field of any type accepts these
POSITIVE = [p for p in LEAVES if p[-1] in {"learning_rate", "epochs", "batch_size", "max_length",
                                           "max_new_tokens", "max_steps"}] + [("dpo", "beta")]
NON_NEGATIVE = [("data", "sft_rows"), ("data", "heldout_rows")]  # 0: that part of the data is off
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)


def _set(data, path, value):
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


recipes = st.one_of(
    st.tuples(st.sampled_from(LEAVES), st.sampled_from(NEVER_VALID)).map(lambda t: (_set(RESOLVED, *t), t[0])),
    st.tuples(st.sampled_from(POSITIVE), st.sampled_from([0, -1, -0.5, -1e9])).map(
        lambda t: (_set(RESOLVED, *t), t[0])),
    st.tuples(st.sampled_from(NON_NEGATIVE), st.sampled_from([-1, -0.5, -1e9])).map(
        lambda t: (_set(RESOLVED, *t), t[0])),
    st.tuples(st.sampled_from(sorted({p[:-1] for p in LEAVES})), NAME).filter(
        lambda t: t[1] not in {p[-1] for p in LEAVES}).map(
        lambda t: (_set(RESOLVED, t[0] + ("x_" + t[1],), 1), t[0] + ("x_" + t[1],))),
)


@settings(max_examples=250, deadline=None)
@given(recipes)
def test_malformed_recipes_get_an_error_naming_the_field(case):
    data, path = case
    try:
        loads(yaml.safe_dump(data))
    except RecipeError as exc:
        assert "recipe." + ".".join(path) in str(exc) or f"recipe.{'.'.join(path[:-1])}:" in str(exc), str(exc)
    else:
        raise AssertionError(f"accepted a malformed recipe at {'.'.join(path)}")


GOOD = {
    "sft": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    "preference": {"prompt": "hi", "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}],
                   "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "b"}]},
    "rlvr": {"messages": [{"role": "user", "content": "1+1?"}], "ground_truth": "2", "dataset": "arithmetic"},
}
BAD_VALUES = [None, "", "   ", 3, [], {}, [1]]


def _mutations(kind):
    row = GOOD[kind]
    top = st.tuples(st.sampled_from(sorted(row)), st.sampled_from(BAD_VALUES)).map(
        lambda t: ({**row, t[0]: t[1]} if t[1] is not None else {k: v for k, v in row.items() if k != t[0]}))
    field = "chosen" if kind == "preference" else "messages"
    inner = st.one_of(
        st.tuples(st.just("role"), st.sampled_from([None, "", 7, "robot", ["x"]])),
        st.tuples(st.just("content"), st.sampled_from([None, "", "   ", 7, ["x"]])),
    ).map(lambda t: {**row, field: [{**row[field][0], t[0]: t[1]}] + row[field][1:]})
    raw = st.sampled_from(["not json", "[1, 2]", '"text"', "{"]).map(lambda s: ("raw", s))
    return st.one_of(top, inner, raw)


rows = st.sampled_from(sorted(GOOD)).flatmap(lambda kind: st.tuples(st.just(kind), _mutations(kind),
                                                                     st.integers(0, 5)))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows)
def test_malformed_rows_get_an_error_naming_file_and_line(tmp_path, case):
    kind, bad, good_before = case
    path = tmp_path / f"{kind}.jsonl"
    text = bad[1] if isinstance(bad, tuple) else json.dumps(bad)
    path.write_text("".join(json.dumps(GOOD[kind]) + "\n" for _ in range(good_before)) + text + "\n")
    try:
        read_rows(path, kind)
    except RowError as exc:
        assert str(exc).startswith(f"{path} line {good_before + 1}: "), str(exc)
    else:
        raise AssertionError(f"accepted a malformed {kind} row: {text}")


def test_the_unmutated_rows_are_valid():
    assert all(problems(row, kind) == [] for kind, row in GOOD.items())
