"""The `posttrain` command: demo, run, plan, report, registry, compile, preflight, submit."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from posttrain.recipe import Recipe, RecipeError, load, shipped


def _pipelines(name: str):
    # The pipeline layer imports kfp; the library under src/posttrain never does.
    return importlib.import_module(f"posttrain.pipelines.{name}")


def _run_local(recipe: Recipe, out: Path) -> int:
    out = out.resolve()
    recipe = recipe.override(promote={"registry": (out / "registry").as_uri()})
    local = _pipelines("local")
    from posttrain.reporting.tracking import TrackingError

    print(f"posttrain: running recipe {recipe.name} locally; each stage's log in {out / 'logs'}", flush=True)
    try:
        report = local.run(recipe, out)
    except (local.StageFailed, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_stages(report))
    print()
    gate = report["gate"]
    print(f"gate: {'PASS' if gate['passed'] else 'REFUSED'}" + "".join(f"\n  - {r}" for r in gate["reasons"]))
    print(f"report: {out / 'report.html'}  (also report.md, report.json)")
    if recipe.tracking.backend == "mlflow" and not recipe.tracking.uri:
        print(f"curves: mlflow ui --backend-store-uri sqlite:///{out / 'mlflow.db'}")
    return 0


def _report(run_dir: Path) -> int:
    import json

    from posttrain.reporting.report import render_html, render_markdown

    path = run_dir / "report.json"
    if not path.is_file():
        print(f"error: {path}: no report (did the run reach its gate?)", file=sys.stderr)
        return 1
    report = json.loads(path.read_text())
    (run_dir / "report.html").write_text(render_html(report))
    print(render_markdown(report))
    print(format_stages(report))
    return 0


def _registry(args) -> int:
    import json

    from posttrain import registry

    try:
        if args.action == "show":
            if not (args.name and args.version):
                print("error: registry show needs NAME and VERSION", file=sys.stderr)
                return 2
            entry = registry.show(args.registry, args.name, args.version)
            print(json.dumps(entry, indent=2))
            if adapter := entry.get("adapter"):  # on stderr: stdout stays one JSON document
                print(f"{args.name} {args.version} is a LoRA adapter (rank {adapter['rank']}); it needs its base "
                      f"{adapter['base_sha256']} ({adapter['base_stage']} output), whose full weights are "
                      f"{adapter['root_sha256']}", file=sys.stderr)
            return 0
        found = registry.entries(args.registry, args.name)
    except registry.RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'name':<16}{'version':<18}{'created':<22}scores")
    for entry in found:
        scores = ", ".join(f"{k}={v:.3f}" for k, v in entry["scores"].items())
        print(f"{entry['name']:<16}{entry['version']:<18}{entry['created']:<22}{scores}")
    return 0


def _preflight(recipe: Recipe, args) -> int:
    """Check the cluster of the user's kubeconfig for what `recipe` names; 1 (and every problem) if it lacks any."""
    from posttrain import preflight

    try:
        api_client, context_namespace = preflight.from_kubeconfig(args.kubeconfig, args.context)
    except Exception as exc:  # no kubeconfig, no such context: the kubernetes client's own errors
        print(f"error: preflight: cannot read the kubeconfig: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return 1
    namespace = args.k8s_namespace or context_namespace or preflight.DEFAULT_NAMESPACE
    try:
        preflight.run(recipe, namespace, api_client)
    except preflight.PreflightFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the API server does not answer
        print(f"error: preflight: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return 1
    return 0


def _submit(recipe: Recipe, args) -> int:
    if not args.skip_preflight and _preflight(recipe, args):
        print("submit: not started (preflight failed; --skip-preflight to start anyway)", file=sys.stderr)
        return 1
    try:
        run_id = _pipelines("submit").submit(recipe, args.host, args.experiment, args.run_name, args.namespace)
    except Exception as exc:  # the KFP client raises urllib3, ApiException and more; report, do not trace
        print(f"error: cannot start the run on {args.host}: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return 1
    print(f"submit: started run {run_id} of {recipe.name} in experiment {args.experiment!r} on {args.host}")
    return 0


def _plan(recipe: Recipe, data_dir: Path | None) -> int:
    from posttrain import plan

    result = plan.make(recipe, data_dir)
    print(plan.markdown(result))
    print(f"plan: {result.seconds:.1f}s")
    if result.problems:
        print("error: " + "\n  ".join(["does not fit:", *result.problems]), file=sys.stderr)
        return 1
    return 0


def _planned(recipe: Recipe) -> Recipe:
    """The recipe, once `posttrain.plan` finds every stage fits (PlanError, a RecipeError, otherwise)."""
    from posttrain import plan

    plan.check(recipe)
    return recipe


def format_stages(report: dict) -> str:
    from posttrain.reporting.rows import key_numbers as _key_numbers

    lines = [f"{'stage':<11}{'seconds':>8}  key numbers"]
    for stage in report.get("stages", []):
        seconds = "" if stage["seconds"] is None else f"{stage['seconds']:.0f}"
        lines.append(f"{stage['stage']:<11}{seconds:>8}  {_key_numbers(stage['summary'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posttrain", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the whole pipeline locally on the tiny recipe")
    demo.add_argument("--out", type=Path, default=Path("demo-run"), help="run directory (default: demo-run)")
    run = commands.add_parser("run", help="run a recipe")
    run.add_argument("recipe", type=Path)
    run.add_argument("--local", action="store_true", required=True, help="execute with kfp.local on this machine")
    run.add_argument("--out", type=Path, default=Path("run"), help="run directory (default: run)")
    pln = commands.add_parser("plan", help="every stage's GPU memory, time and cost; exit 1 when one does not fit")
    pln.add_argument("recipe", type=Path)
    pln.add_argument("--data", type=Path, default=None, help="the data stage's output: row counts and lengths")
    sub = commands.add_parser("submit", help="compile a recipe and start a run on a KFP endpoint")
    sub.add_argument("recipe", type=Path)
    sub.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    sub.add_argument("--experiment", default="posttrain")
    sub.add_argument("--run-name", default=None, help="default: <recipe name>-<recipe hash>")
    sub.add_argument("--namespace", default=None, help="multi-user KFP: the profile namespace")
    sub.add_argument("--skip-preflight", action="store_true", help="start the run without checking the cluster")
    pre = commands.add_parser("preflight", help="check that the cluster has every object a recipe names")
    pre.add_argument("recipe", type=Path)
    for command in (sub, pre):
        command.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
        command.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
        command.add_argument("--k8s-namespace", default=None,
                             help="where the runs' pods run (default: the context's namespace, else posttrain)")
    rep = commands.add_parser("report", help="print a run's report (and write report.html next to it)")
    rep.add_argument("run_dir", type=Path)
    reg = commands.add_parser("registry", help="list or show promoted models")
    reg.add_argument("action", choices=["list", "show"])
    reg.add_argument("name", nargs="?", help="recipe name (show: required)")
    reg.add_argument("version", nargs="?", help="show: the entry version")
    reg.add_argument("--registry", required=True, help="registry URL, e.g. file:///runs/registry or s3://bucket")
    comp = commands.add_parser("compile", help="compile the pipeline IR for a recipe")
    comp.add_argument("recipe", type=Path, nargs="?", default=None, help="default: the shipped tulu3-8b.yaml")
    comp.add_argument("--output", type=Path, default=None, help="default: pipelines/tulu3.yaml")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _run_local(shipped("tiny.yaml"), args.out)
        if args.command == "run":
            return _run_local(_planned(load(args.recipe)), args.out)
        if args.command == "plan":
            return _plan(load(args.recipe), args.data)
        if args.command == "submit":
            return _submit(_planned(load(args.recipe)), args)
        if args.command == "preflight":
            return _preflight(load(args.recipe), args)
        if args.command == "report":
            return _report(args.run_dir)
        if args.command == "registry":
            return _registry(args)
        tulu3 = _pipelines("tulu3")
        recipe = _planned(load(args.recipe) if args.recipe else shipped("tulu3-8b.yaml"))
        path = tulu3.compile(recipe, args.output or tulu3.IR)
        print(f"compile: wrote {path}")
        return 0
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
