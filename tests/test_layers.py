"""The layering DESIGN.md promises: the library never imports kfp; the checked-in IR is what compile gives."""
import ast

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
    assert "posttrain.evals.humaneval" in graph["posttrain.stages.data"]  # a lazy import inside a function
