from posttrain import cli
from posttrain.pipelines import tulu3

from conftest import ROOT


def test_compile_writes_the_ir_for_a_recipe(tmp_path, capsys):
    out = tmp_path / "tiny.yaml"
    assert cli.main(["compile", str(ROOT / "recipes" / "tiny.yaml"), "--output", str(out)]) == 0
    assert f"compile: wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert "# Name: tulu3" in text and "ghcr.io/posttrain/sft:" in text
    assert "\"name\":\"tiny\"" in text  # the recipe (one-line JSON) is the default of the pipeline parameter


def test_default_compile_target_is_the_checked_in_ir():
    assert tulu3.IR == ROOT / "pipelines" / "tulu3.yaml"


def test_bad_recipe_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsft:\n  learning_rate: -1\n")
    assert cli.main(["run", str(bad), "--local", "--out", str(tmp_path / "run")]) == 2
    assert "recipe.sft.learning_rate: Input should be greater than 0, got -1" in capsys.readouterr().err


def test_stage_table_lists_time_and_key_numbers():
    report = {"stages": [{"stage": "sft", "seconds": 12.3, "summary": {"train_loss": 0.51234, "steps": 10}},
                         {"stage": "gate", "seconds": None, "summary": {"passed": True, "reasons": []}}]}
    lines = cli.format_stages(report).splitlines()
    assert lines[1].split() == ["sft", "12", "train_loss=0.512,", "steps=10"]
    assert lines[2].split() == ["gate", "passed=True"]


def test_report_and_registry_commands_read_a_run(tmp_path, capsys):
    from test_promote import RECIPE, _stage_dirs

    from posttrain.stages import promote

    model_dir, report_dir = _stage_dirs(tmp_path, 0.7)
    registry_url = (tmp_path / "registry").as_uri()
    url = promote.register(RECIPE, model_dir, report_dir, registry_url)
    capsys.readouterr()

    assert cli.main(["report", str(report_dir)]) == 0
    assert "## Gate: PASS" in capsys.readouterr().out and (report_dir / "report.html").is_file()
    assert cli.main(["registry", "list", "--registry", registry_url]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[1].split()[:2] == ["t", url.rsplit("/", 1)[1]]
    assert cli.main(["registry", "show", "t", url.rsplit("/", 1)[1], "--registry", registry_url]) == 0
    assert '"model_sha256"' in capsys.readouterr().out
    assert cli.main(["registry", "show", "t", "nope", "--registry", registry_url]) == 1
    assert cli.main(["report", str(tmp_path / "nothing")]) == 1
