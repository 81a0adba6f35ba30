"""The CPU locks the README and .ci/run install from: requirements/test.lock (pyproject.toml's dependencies and
its `test` extra) and requirements/cpu.lock (the dependencies alone: the demo), both with torch's CPU build.

Made by `uv pip compile` with `--exclude-newer` (the lock's date; the command is each lock's second line).
uv resolves each again keeping what still fits (tests/lockfiles.py), at the lock's date and with no cut-off
(network: PyPI and the torch wheel's find-links): every pin must survive. Every range pyproject.toml declares
holds; the demo's lock is the test lock's subset, version for version; the environment these tests run in is
the lock (what CI installs).
"""
import importlib.metadata
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from conftest import ROOT
from lockfiles import CUTOFFS, pins, resolve_again, unmet

TEST_LOCK, DEMO_LOCK = ROOT / "requirements" / "test.lock", ROOT / "requirements" / "cpu.lock"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("lock, later", [(TEST_LOCK, False), (TEST_LOCK, True), (DEMO_LOCK, True)],
                         ids=[f"test.lock-{CUTOFFS[0]}", f"test.lock-{CUTOFFS[1]}", f"cpu.lock-{CUTOFFS[1]}"])
def test_the_resolver_keeps_every_pin_of_the_lock(tmp_path, lock, later):
    locked, fresh = pins(lock.read_text()), pins(resolve_again(lock, tmp_path, later))
    changed = {name: (locked.get(name), fresh.get(name)) for name in locked.keys() | fresh.keys()
               if locked.get(name) != fresh.get(name)}
    assert changed == {}, f"{lock.name} is no resolution of its input: run the command at its top"


@pytest.mark.parametrize("lock, declared", [(TEST_LOCK, PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]),
                                            (DEMO_LOCK, PROJECT["dependencies"])], ids=["test.lock", "cpu.lock"])
def test_every_range_pyproject_declares_holds(lock, declared):
    locked = pins(lock.read_text())
    assert [why for line in declared if (why := unmet(Requirement(line), locked))] == []
    assert locked["torch"].endswith("+cpu"), "the CPU build of torch (requirements/cpu.in), not PyPI's CUDA one"


def test_the_demo_installs_what_the_tests_ran():
    demo, test = pins(DEMO_LOCK.read_text()), pins(TEST_LOCK.read_text())
    assert {name: (version, test.get(name)) for name, version in demo.items() if test.get(name) != version} == {}


def test_this_environment_is_the_test_lock():
    """What CI installs is what ran here: a version off the lock means the lock or the environment is stale."""
    def installed(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None
    off = {name: (version, found) for name, version in pins(TEST_LOCK.read_text()).items()
           if (found := installed(name)) is None or Version(found) != Version(version)}
    assert off == {}, "(lock, installed): reinstall with the README's test command"


def test_the_readme_and_ci_install_from_the_locks_with_the_locked_uv():
    readme = (ROOT / "README.md").read_text()
    ci_line = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1]
    uv = f"pip install uv=={pins(TEST_LOCK.read_text())['uv']} && "
    demo = next(line for line in readme.splitlines() if "posttrain demo --out" in line and "venv" in line)
    test = next(line for line in readme.splitlines() if line.endswith("python -m pytest") and "venv" in line)
    assert uv + ".venv/bin/uv pip install --python .venv -r requirements/cpu.lock -e . &&" in demo
    assert uv + ".venv/bin/uv pip install --python .venv -r requirements/test.lock -e . &&" in test
    assert ci_line == test, ".ci/run runs the README's test command as written"
