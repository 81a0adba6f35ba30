"""The GPU image's dependency lock: made by a resolver, every declared range holds, every recipe's needs are in it.

`images/gpu/requirements.lock` is `uv pip compile` of `images/gpu/requirements.in` for the GPU image's platform,
as of the date in its `--exclude-newer`. Here uv resolves it again, keeping what still fits (tests/lockfiles.py),
at the lock's date and with no cut-off (network: PyPI): every pin must survive both. Then, independently of uv,
every range that requirements.in and pyproject.toml declare holds; the core packages' own metadata
(Requires-Dist of the locked wheels, from PyPI) accepts every locked version; TRL's own vLLM gate accepts the
locked vLLM; and each shipped recipe's needs (posttrain.recipe.needs: engine, DeepSpeed, vLLM, judges, LoRA)
are in the lock with their extras.
"""
import email.parser
import importlib.metadata
import io
import json
import tomllib
import urllib.request
import warnings
import zipfile

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT
from lockfiles import CUTOFFS, pins, resolve_again, unmet
from posttrain.recipe import load
from posttrain.recipe.needs import packages

LOCK = ROOT / "images" / "gpu" / "requirements.lock"
# The packages whose ranges must fit together (issue 17); deepspeed ships as an sdist only: no wheel metadata.
CORE = ("vllm", "trl", "transformers", "torch", "accelerate", "datasets", "tokenizers", "torchvision", "torchaudio")
# The GPU image: Linux x86_64, CPython 3.12 (the lock's --python-platform and --python-version)
TARGET = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

LOCKED = pins(LOCK.read_text())


@pytest.mark.parametrize("later", [False, True], ids=CUTOFFS)
def test_the_resolver_keeps_every_pin_of_the_lock(tmp_path, later):
    fresh = pins(resolve_again(LOCK, tmp_path, later))
    changed = {name: (LOCKED.get(name), fresh.get(name)) for name in LOCKED.keys() | fresh.keys()
               if LOCKED.get(name) != fresh.get(name)}
    assert changed == {}, "the lock is no resolution of images/gpu/requirements.in: run the command at its top"


def test_every_range_the_lock_input_declares_holds():
    lines = [line.split("#")[0].strip() for line in (ROOT / "images/gpu/requirements.in").read_text().splitlines()]
    assert [why for line in lines if line and (why := unmet(Requirement(line), LOCKED))] == []


class _RemoteFile(io.RawIOBase):
    """A wheel on PyPI read with HTTP range requests: zipfile reads its directory and METADATA, not 900 MB of torch."""

    def __init__(self, url: str):
        self.url, self.position = url, 0
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=120) as response:
            self.size = int(response.headers["Content-Length"])

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self.position

    def seek(self, offset, whence=io.SEEK_SET):
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def read(self, count=-1):
        end = self.size if count is None or count < 0 else min(self.size, self.position + count)
        if end <= self.position:
            return b""
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.position}-{end - 1}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            data = response.read()
        self.position += len(data)
        return data


def _metadata(name: str, version: str) -> email.message.Message:
    """The core metadata inside one Linux wheel of name==version on PyPI: what pip and uv read, not a transcript."""
    request = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = json.load(urllib.request.urlopen(request, timeout=120))["files"]
    prefix = f"{name.replace('-', '_')}-{version}-".lower()
    wheels = [f["url"] for f in files if f["filename"].lower().startswith(prefix) and f["filename"].endswith(".whl")
              and ("manylinux" in f["filename"] and "x86_64" in f["filename"] or "-none-any" in f["filename"])]
    assert wheels, f"{name}=={version}: no Linux x86_64 wheel on PyPI"
    with zipfile.ZipFile(_RemoteFile(wheels[0])) as wheel:
        return email.parser.Parser().parsestr(wheel.read(f"{name.replace('-', '_')}-{version}.dist-info/METADATA").decode())


@pytest.mark.parametrize("name", CORE)
def test_every_locked_version_is_inside_the_core_packages_declared_ranges(name):
    assert name in LOCKED, f"{name} is not in the lock"
    requirements = [Requirement(r) for r in _metadata(name, LOCKED[name]).get_all("Requires-Dist") or []]
    checked, outside = [], []
    for requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate({**TARGET, "extra": ""}):
            continue  # an extra's or another platform's requirement
        dependency = canonicalize_name(requirement.name)
        assert dependency in LOCKED, f"{name} {LOCKED[name]} requires {requirement}, which the lock lacks"
        checked.append(dependency)
        if not requirement.specifier.contains(LOCKED[dependency], prereleases=True):
            outside.append(f"{name} {LOCKED[name]} requires {requirement}; the lock has {LOCKED[dependency]}")
    assert outside == []
    if name == "vllm":  # the pairs issue 17 is about were really read from metadata
        assert {"torch", "transformers"} <= set(checked)


def test_trl_accepts_the_locked_vllm(monkeypatch):
    from trl import import_utils

    assert Version(LOCKED["trl"]) == Version(importlib.metadata.version("trl")), "CPU and GPU TRL differ"
    monkeypatch.setattr(import_utils, "_is_package_available", lambda name, return_version=False: (True, LOCKED["vllm"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TRL only warns about a vLLM outside its range
        assert import_utils.is_vllm_available()


def test_every_runtime_dependency_is_locked_and_every_differing_pin_is_explained():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    readme = (ROOT / "images" / "README.md").read_text()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in LOCKED, f"pyproject.toml depends on {name}; the GPU lock lacks it"
        if not requirement.specifier.contains(LOCKED[name]):
            assert f"`{name}`" in readme.split("## CPU pins and the GPU lock", 1)[-1], \
                f"{name}: pyproject says {requirement.specifier}, the lock {LOCKED[name]}; say why in images/README.md"


def _requires(requirement: Requirement) -> list[Requirement]:
    """What `requirement`'s extras add, read from the locked version's metadata (installed here if the same, else PyPI)."""
    name = canonicalize_name(requirement.name)
    try:
        same = importlib.metadata.version(name) == LOCKED[name]
    except importlib.metadata.PackageNotFoundError:
        same = False
    lines = importlib.metadata.requires(name) if same else _metadata(name, LOCKED[name]).get_all("Requires-Dist")
    return [dependency for line in lines or [] if (dependency := Requirement(line)).marker
            and any(dependency.marker.evaluate({**TARGET, "extra": extra}) for extra in requirement.extras)
            and not dependency.marker.evaluate({**TARGET, "extra": ""})]


@pytest.mark.parametrize("path", RECIPES, ids=[path.name for path in RECIPES])
def test_the_lock_holds_what_each_shipped_recipe_needs(path):
    missing = []
    for line, field in packages(load(path)).items():
        requirement = Requirement(line)
        extras = _requires(requirement) if requirement.extras and canonicalize_name(requirement.name) in LOCKED else []
        for needed in [requirement, *extras]:
            if why := unmet(needed, LOCKED):
                missing.append(f"{field} needs {why}")
    assert missing == [], f"{path.name}: add these to images/gpu/requirements.in and re-lock"


def test_the_needs_come_from_the_recipe_fields():
    tulu = load(ROOT / "recipes" / "tulu3-8b.yaml")
    assert packages(tulu) == {"deepspeed": "recipe.sft.deepspeed", "vllm": "recipe.rlvr.vllm",
                              "lm-eval[ifeval,math]": "recipe.eval.engine"}
    plain = tulu.override(sft={"deepspeed": "none"}, dpo={"deepspeed": "none"}, rlvr={"deepspeed": "none", "vllm": "off"},
                          eval={"engine": "registry"},
                          preference={"judge": "reward_model", "reward_model": "allenai/Llama-3.1-Tulu-3-8B-RM"})
    assert packages(plain) == {"transformers": "recipe.preference.judge"}


def test_the_image_that_runs_the_stages_has_a_c_compiler():
    """Triton and DeepSpeed's op builder compile when a stage runs: the compiler belongs in the last stage."""
    run_stage = (ROOT / "images" / "gpu" / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    assert "apt-get install" in run_stage and ("build-essential" in run_stage or " gcc" in run_stage)
