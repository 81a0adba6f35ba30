"""The GPU image's dependency lock: made by a resolver, and every declared range holds (network: PyPI).

`images/gpu/requirements.lock` is `uv pip compile` of `images/gpu/requirements.in` for the GPU image's platform;
here the same command runs again and must give the same lock. Then, independently of uv, the core packages'
own metadata (Requires-Dist of the locked wheels, from PyPI) must accept every locked version, TRL's own vLLM
gate must accept the locked vLLM, and every runtime dependency of pyproject.toml must be in the lock.
"""
import email.parser
import importlib.metadata
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
import warnings
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT

LOCK = ROOT / "images" / "gpu" / "requirements.lock"
# The packages whose ranges must fit together (issue 17); deepspeed ships as an sdist only: no wheel metadata.
CORE = ("vllm", "trl", "transformers", "torch", "accelerate", "datasets", "tokenizers", "torchvision", "torchaudio")
# The GPU image: Linux x86_64, CPython 3.12 (the lock's --python-platform and --python-version)
TARGET = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def pins(text: str) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


LOCKED = pins(LOCK.read_text())


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        pytest.fail("uv is missing: it is in the test extras (pip install -e '.[test]')")
    return found


def test_the_lock_is_what_the_resolver_gives_for_its_input(tmp_path):
    command = shlex.split(LOCK.read_text().splitlines()[1].lstrip("# "))  # the line uv wrote at the top
    assert command[:3] == ["uv", "pip", "compile"] and "--generate-hashes" in command
    out = command.index("-o") + 1
    command[out] = str(tmp_path / "requirements.lock")
    subprocess.run([_uv(), *command[1:], "-q"], check=True, cwd=ROOT)
    fresh = (tmp_path / "requirements.lock").read_text().splitlines()[2:]  # below the header with the command
    assert fresh == LOCK.read_text().splitlines()[2:], "re-run the command at the top of the lock and commit it"


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
