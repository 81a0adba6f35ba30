"""The pipeline's first task: the run's recipe, split into what each stage reads (posttrain.stage_table).

Each stage's task takes its view (`Recipe.view_json`) as its `recipe` parameter, so KFP's cache (and
kfp.local's) keys a task by the sections it reads: a change to RLVR reuses data..dpo. The outputs below are the
stages whose `reads` are not the whole recipe, in pipeline order (pipelines/tulu3.py checks them against the
table); gate and promote take the whole recipe, the lineage their registry entry keeps.
"""
from typing import NamedTuple

from kfp import dsl

from posttrain.components.images import image


@dsl.component(base_image=image("data"), install_kfp_package=False)
def views(recipe: str) -> NamedTuple("Views", [("data", str), ("base", str), ("sft", str), ("preference", str),
                                              ("dpo", str), ("rlvr", str), ("eval", str)]):
    """Validate the recipe (a bad one stops the run before any stage starts) and give each stage its view."""
    from posttrain.recipe import loads
    from posttrain.stage_table import READ_BY_EVERY_TASK, STAGES

    whole = loads(recipe)
    return tuple(whole.view_json((*stage.reads, *READ_BY_EVERY_TASK)) for stage in STAGES.values()
                 if "*" not in stage.reads)
