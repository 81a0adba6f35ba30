"""The layering docs/ARCHITECTURE.md shows: the library never imports kfp; the checked-in IR is what compile gives."""
import ast

import yaml

from posttrain.pipelines import tulu3
from posttrain.recipe import load

from conftest import ROOT


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_nothing_under_src_imports_kfp():
    offenders = [f"{path.relative_to(ROOT)}: {name}"
                 for path in (ROOT / "src" / "posttrain").rglob("*.py")
                 for name in _imports(path) if name == "kfp" or name.startswith("kfp.")]
    assert offenders == []


def test_checked_in_ir_equals_a_fresh_compile(tmp_path):
    fresh = tulu3.compile(load(ROOT / "recipes" / "tulu3-8b.yaml"), tmp_path / "tulu3.yaml")
    assert fresh.read_text() == tulu3.IR.read_text(), "run `posttrain compile` and commit pipelines/tulu3.yaml"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{command}\n```" in readme


def _module_name(path) -> str:
    parts = path.relative_to(ROOT / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """posttrain module -> the posttrain modules it imports (at any depth in the file: lazy imports count too)."""
    modules = {_module_name(path): path for path in (ROOT / "src" / "posttrain").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from posttrain.evals import humaneval` imports a module; `from x import name` a name in x
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def test_no_stage_imports_another_stage():
    graph = _graph()
    offenders = [f"{name} imports {target}" for name, targets in graph.items() if name.startswith("posttrain.stages.")
                 for target in targets if target.startswith("posttrain.stages.")]
    assert offenders == [], "shared names belong in the libraries (data.formats, evals, ...)"


def test_no_import_cycle_under_src():
    graph = _graph()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return [*path[path.index(target):], target] if target in path else [*path, target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[name] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_graph_sees_the_imports_it_checks():
    graph = _graph()  # guards the two tests above against a graph that silently finds nothing
    assert "posttrain.data.formats" in graph["posttrain.stages.sft"]
    assert "posttrain.evals.humaneval" in graph["posttrain.data.decontaminate"]  # a lazy import inside a function


def test_every_list_of_stages_is_the_stage_table():
    from posttrain import components, stage_table
    from posttrain.training import launch
    from posttrain.components.images import IMAGES, image
    from posttrain.pipelines import local
    from posttrain.recipe import Cluster, Resources

    names = stage_table.NAMES
    per_stage = tuple(name for name, field in Cluster.model_fields.items() if field.annotation is Resources)
    assert per_stage == names  # the rest are cluster-wide settings (the checkpoint volume, ...)
    assert local.ORDER == names
    assert set(launch.DISTRIBUTED) == {n for n, s in stage_table.STAGES.items() if s.distributed}
    assert set(components.__all__) == {s.component for s in stage_table.STAGES.values()}
    assert set(IMAGES) == set(stage_table.IMAGES)
    for name, stage in stage_table.STAGES.items():
        component = getattr(components, stage.component).component_spec
        assert component.implementation.container.image == image(name) == IMAGES[stage.image]
    pipeline = next(yaml.safe_load_all(tulu3.IR.read_text()))  # the checked-in IR: one executor per stage
    executors = pipeline["deploymentSpec"]["executors"]
    # one executor per stage, and the views task that hands each stage its view of the recipe (components/views.py)
    assert {f"exec-{name}": image(name) for name in names} | {"exec-views": image("data")} == \
        {k: v["container"]["image"] for k, v in executors.items()}


def test_stage_logic_modules_exist_and_have_their_entry_points():
    from importlib import import_module

    from posttrain import stage_table

    for name, stage in stage_table.STAGES.items():
        module = import_module(stage.logic)
        assert callable(getattr(module, stage.entry))
