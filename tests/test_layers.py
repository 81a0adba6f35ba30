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
