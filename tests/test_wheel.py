"""What ships is what runs: the built wheel, installed outside the source tree, imports and compiles.

The images install the package as a wheel, not editable, so a module or data file missing from the wheel breaks
every stage in every image while the editable tests pass. Here the wheel goes into a fresh venv whose only view
of the dependencies is this interpreter's site-packages (appended by a .pth file; the editable install's own
.pth hook is not run from there), and everything runs from a directory outside the checkout.
"""
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest
from packaging.version import Version

from conftest import ROOT

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)

# Every module the source tree has, by its installed name: the wheel must have the same set.
SOURCES = {"posttrain": ROOT / "src" / "posttrain", "posttrain.components": ROOT / "components",
           "posttrain.pipelines": ROOT / "pipelines", "posttrain.recipes": ROOT / "recipes"}


def source_modules() -> set[str]:
    found = {"posttrain"}  # a namespace package: no __init__.py
    for package, root in SOURCES.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found.add(".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return found


CHECK = """
import json, pkgutil, sys
import posttrain
names = {"posttrain"} | {m.name for m in pkgutil.walk_packages(posttrain.__path__, "posttrain.")}
for name in sorted(names):
    __import__(name)
from posttrain.recipe import shipped
print(json.dumps({"modules": sorted(names), "paths": [sys.modules[n].__file__ for n in sorted(names)],
                  "tiny": shipped("tiny.yaml").digest(), "tulu3": shipped("tulu3-8b.yaml").digest()}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with only the wheel of this checkout installed; its python and a working directory outside ROOT."""
    work = tmp_path_factory.mktemp("wheel")
    # This venv's setuptools when it meets pyproject's build requirement (offline, fast), else an isolated build
    has = importlib.util.find_spec("setuptools") and Version(importlib.metadata.version("setuptools")) >= Version("68")
    build = ["--no-build-isolation"] if has else []
    # A copy, so that no build/ or egg-info left in the checkout by an earlier build can fill in for a missing file
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__",
                                                                "demo-run", "run"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *build, "-q", "-w", str(work / "dist"),
                    str(source)], check=True, cwd=work)
    wheel, = (work / "dist").glob("posttrain-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (work / "venv" / purelib.removeprefix(str(env_dir) + "/") / "deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, cwd=work)
    run_dir = work / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return python, run_dir, env


def test_the_wheel_has_every_module_and_imports_it_from_outside_the_checkout(installed):
    python, run_dir, env = installed
    result = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, cwd=run_dir, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(found["modules"]) == source_modules()
    assert not [path for path in found["paths"] if path and str(ROOT) in path], "imported from the source tree"
    from posttrain.recipe import load

    assert found["tiny"] == load(ROOT / "recipes" / "tiny.yaml").digest()
    assert found["tulu3"] == load(ROOT / "recipes" / "tulu3-8b.yaml").digest()


def test_the_installed_command_compiles_the_shipped_recipe(installed):
    python, run_dir, env = installed
    out = run_dir / "tulu3.yaml"
    subprocess.run([python.parent / "posttrain", "compile", "--output", str(out)], check=True, cwd=run_dir, env=env)
    assert out.read_text() == (ROOT / "pipelines" / "tulu3.yaml").read_text()
