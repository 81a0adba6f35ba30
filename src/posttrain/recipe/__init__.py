"""The recipe: one typed, validated description of a post-training run.

This package is the only place defaults live. Every section is a frozen pydantic model that forbids unknown
keys, so a typo in a recipe is an error naming the field instead of a silently ignored setting. What a run
does (model, data, training stages, eval, promote) is in `sections`, where it runs (cluster, sandbox,
tracking) in `platform`; every name is importable from `posttrain.recipe`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from posttrain.recipe.platform import Cluster, Resources, SandboxSection, SecretEnv, Toleration, TrackingSection
from posttrain.recipe.sections import (Checkpoints, DataSection, Decontamination, DPOSection, EvalSection,
                                       LearningRate, LoRA, ModelSection, Optimisation, PreferenceSection,
                                       PromoteSection, RecipeError, RLVRSection, Scheduler, Section, SFTSection, Source,
                                       Synthesis, TinyModel, Warmup)

__all__ = ["Checkpoints", "Cluster", "DataSection", "Decontamination", "DPOSection", "EvalSection", "LearningRate",
           "LoRA", "ModelSection", "Optimisation", "PreferenceSection", "PromoteSection", "Recipe", "RecipeError",
           "Resources", "RLVRSection", "SandboxSection", "Scheduler", "SecretEnv", "Section", "SFTSection", "Source",
           "Synthesis", "TinyModel", "Toleration", "TrackingSection", "Warmup", "load", "loads", "parse", "shipped"]


class Recipe(Section):
    name: str = Field(min_length=1)  # the run's name: registry entries, tracking experiment, KFP run names
    # The run's seed: every random choice (data, initial weights, shuffles, sampling) derives from it and the
    # section's own `seed` (`seed_for`). 0 leaves each section's seed as it is.
    seed: int = Field(0, ge=0)
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    sft: SFTSection = SFTSection()
    preference: PreferenceSection = PreferenceSection()
    dpo: DPOSection = DPOSection()
    rlvr: RLVRSection = RLVRSection()
    eval: EvalSection = EvalSection()
    promote: PromoteSection = PromoteSection()
    cluster: Cluster = Cluster()
    sandbox: SandboxSection = SandboxSection()
    tracking: TrackingSection = TrackingSection()
    # The sections this copy keeps when it is one stage's view (`view`); empty: the whole recipe.
    _view: tuple[str, ...] = PrivateAttr(())

    @model_validator(mode="after")
    def _across_sections(self, info: ValidationInfo) -> "Recipe":
        # A view's other sections are defaults: a check across sections runs only where it keeps them all.
        self._view = tuple((info.context or {}).get("view", ()))
        if self.rlvr.algorithm == "grpo" and self._keeps("rlvr", "cluster.rlvr"):  # PPO runs in one process
            from posttrain.training.rlvr_batches import cluster_world, derive

            derive(self.rlvr, cluster_world(self.cluster.rlvr))
        if self.promote.model_registry == "mlflow" and self.tracking.backend == "none" \
                and self._keeps("promote", "tracking"):
            raise ValueError("recipe.promote.model_registry: mlflow registers the promoted model on the tracking "
                             "server, but recipe.tracking.backend is none; set model_registry: none (or kubeflow), "
                             "or track to a server")
        if "arithmetic" in self.eval.benchmarks and not self.data.heldout_rows and self._keeps("eval", "data"):
            raise ValueError("recipe.data.heldout_rows: 0, but eval.benchmarks has arithmetic, which is scored on them")
        return self

    def _keeps(self, *paths: str) -> bool:
        view = self._view
        return not view or all(path in view or path.split(".")[0] in view for path in paths)

    def view(self, reads: Iterable[str]) -> "Recipe":
        """The recipe as a stage that reads only `reads` sees it: those sections (or `cluster.<stage>`-style
        fields of one) and `name`; every other section at its defaults. Its `digest()` changes only when what
        the stage reads changes: the stage's identity (posttrain.stage_table). `"*"`: the whole recipe."""
        return loads_view(self.view_json(reads))

    def view_json(self, reads: Iterable[str]) -> str:
        """The view as one line of JSON holding only what it keeps: a KFP task's parameter (`loads` reads it)."""
        reads = tuple(reads)
        if "*" in reads:
            return self.model_dump_json()
        whole, kept = self.model_dump(mode="json"), {"name": self.name}
        for path in reads:
            section, _, key = path.partition(".")
            if key:
                kept.setdefault(section, {})[key] = whole[section][key]
            else:
                kept[section] = whole[section]
        return json.dumps({"view": list(reads), "recipe": kept}, sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def seed_for(self, section: str) -> int:
        """The seed a stage uses for `section` ("data", "model", "sft", ...): the section's own seed mixed with
        the run's `seed`, so changing `seed` alone changes every random choice of the run."""
        own = getattr(getattr(self, section, None), "seed", 0)
        if not self.seed:
            return own
        return int.from_bytes(hashlib.sha256(f"{self.seed}:{section}:{own}".encode()).digest()[:4], "big")

    def digest(self) -> str:
        """Content hash of the fully resolved recipe (defaults included), for lineage."""
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()

    def override(self, **sections: dict[str, Any]) -> "Recipe":
        """A copy with some fields of some sections replaced, validated again."""
        data = self.model_dump(mode="json")
        for section, values in sections.items():
            data[section] = {**data.get(section, {}), **values}
        return parse(data, source="override")


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in error and not isinstance(error["input"], dict):
        message += f", got {error['input']!r}"
    return f"recipe.{where}: {message}" if where else f"recipe: {message}"


def parse(data: Any, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping of sections, got {type(data).__name__}")
    context = None
    if set(data) == {"view", "recipe"}:  # one stage's view (Recipe.view_json)
        context, data = {"view": data["view"]}, data["recipe"]
    try:
        return Recipe.model_validate(data, context=context)
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        raise RecipeError(f"{source}: " + "; ".join(lines)) from None


def loads(text: str, source: str = "recipe", read=None) -> Recipe:
    """A recipe from YAML text. `extends: <file>` at its top derives it from another recipe: mappings merge key
    by key, anything else (lists included) is replaced. `read(name)` gives that file's text; None: no extends."""
    return parse(_derived(_yaml(text, source), source, read), source)


def _yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML: {exc}") from None


def _derived(data: Any, source: str, read, seen: tuple[str, ...] = ()) -> Any:
    if not isinstance(data, dict) or "extends" not in data:
        return data
    data = dict(data)
    parent = data.pop("extends")
    if read is None or not isinstance(parent, str):
        raise RecipeError(f"{source}: recipe.extends: names a recipe file beside this one; got {parent!r}"
                          + ("" if read else ", but this recipe was not read from a file"))
    if parent in seen:
        raise RecipeError(f"{source}: recipe.extends: {parent} extends itself through {' -> '.join(seen)}")
    try:
        text = read(parent)
    except OSError as exc:
        raise RecipeError(f"{source}: recipe.extends: cannot read {parent}: {exc.strerror}") from None
    return _merge(_derived(_yaml(text, parent), parent, read, (*seen, parent)), data)


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: _merge(base.get(key), value) for key, value in override.items()}}
    return override


def loads_view(text: str) -> Recipe:
    return parse(json.loads(text), source="view")


def load(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror}") from None
    return loads(text, source=str(path), read=lambda name: (path.parent / name).read_text())


def shipped(name: str) -> Recipe:
    """A recipe that ships with the package (`recipes/` in the source tree, `posttrain/recipes` in a wheel)."""
    from importlib import resources

    resource = resources.files("posttrain.recipes") / name
    try:
        text = resource.read_text()
    except OSError as exc:
        raise RecipeError(f"{name}: no such shipped recipe ({exc.strerror})") from None
    return loads(text, source=f"posttrain/recipes/{name}",
                 read=lambda other: (resources.files("posttrain.recipes") / other).read_text())
