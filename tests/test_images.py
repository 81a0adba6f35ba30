"""The image build definition builds exactly the images the components run, from the right Dockerfile."""
import re

from posttrain import stage_table
from posttrain.components import images

from conftest import ROOT

BAKE = (ROOT / "images" / "docker-bake.hcl").read_text()


def _blocks(kind: str) -> dict[str, str]:
    """name -> body of every top-level `kind "name" { ... }` block (the file keeps them flat, one level deep)."""
    return {m[1]: m[2] for m in re.finditer(rf'^{kind} "([^"]+)" {{\n(.*?)^}}', BAKE, re.M | re.S)}


def _value(body: str, key: str) -> str:
    return re.search(rf"^\s*{key}\s*=\s*(.+)$", body, re.M)[1].strip()


def _render(text: str) -> str:
    variables = {name: _value(body, "default").strip('"') for name, body in _blocks("variable").items()}
    return re.sub(r"\$\{(\w+)\}", lambda m: variables[m[1]], text)


def test_one_target_per_stage_image_tagged_as_the_components_say():
    targets = {name: body for name, body in _blocks("target").items() if not name.startswith("_")}
    assert list(targets) == list(stage_table.IMAGES)
    default = _value(_blocks("group")["default"], "targets")
    assert re.findall(r'"([^"]+)"', default) == list(stage_table.IMAGES)
    for name, body in targets.items():
        assert _render(_value(body, "tags")) == f'["{images.IMAGES[name].split("@")[0]}"]'  # the tag; a digest follows a push


def test_each_image_builds_from_the_dockerfile_its_stages_need():
    bases = {name: _value(body, "dockerfile").strip('"') for name, body in _blocks("target").items()
             if name.startswith("_")}
    for stage in stage_table.STAGES.values():
        body = _blocks("target")[stage.image]
        parent = re.findall(r'"([^"]+)"', _value(body, "inherits"))[0]
        assert bases[parent] == ("images/gpu/Dockerfile" if stage.accelerator else "images/cpu/Dockerfile"), stage.name
        assert (ROOT / bases[parent]).is_file()


def test_every_stage_image_is_built_for_a_stage_that_uses_it():
    used = {stage.image for stage in stage_table.STAGES.values()}
    assert used == set(images.IMAGES) == set(_blocks("target")) - {"_cpu", "_gpu"}
