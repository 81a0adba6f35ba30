"""`posttrain submit` against a fake KFP API server on loopback: the requests it sends."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from posttrain import cli
from posttrain.recipe import load

from conftest import ROOT, reply_json


@pytest.fixture
def fake_kfp():
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body):
            reply_json(self, body)

        def do_GET(self):
            requests.append(("GET", self.path, None))
            self._reply({})  # healthz ok; no experiment of that name yet

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            requests.append(("POST", self.path, body))
            if self.path == "/apis/v2beta1/experiments":
                self._reply({"experiment_id": "exp-7", "display_name": body["display_name"]})
            else:
                self._reply({"run_id": "run-42", "display_name": body.get("display_name")})

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()


def test_submit_creates_experiment_and_run_with_the_recipe(fake_kfp, capsys):
    host, requests = fake_kfp
    recipe_path = ROOT / "recipes" / "tulu3-8b.yaml"
    assert cli.main(["submit", str(recipe_path), "--host", host, "--experiment", "tulu", "--run-name", "r1"]) == 0
    assert "run-42" in capsys.readouterr().out

    posts = [(path, body) for method, path, body in requests if method == "POST"]
    assert [path for path, _ in posts] == ["/apis/v2beta1/experiments", "/apis/v2beta1/runs"]
    assert posts[0][1]["display_name"] == "tulu"
    run = posts[1][1]
    assert run["experiment_id"] == "exp-7" and run["display_name"] == "r1"
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "tulu3"
    sent = json.loads(run["runtime_config"]["parameters"]["recipe"])
    assert sent == load(recipe_path).model_dump(mode="json")
    gpu = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-dpo"]
    assert gpu["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert run["service_account"] == "posttrain-runner"  # the account manifests/base/rbac.yaml grants TrainJobs to


def test_submit_reports_an_unreachable_endpoint_clearly(capsys):
    assert cli.main(["submit", str(ROOT / "recipes" / "tiny.yaml"), "--host", "http://127.0.0.1:9"]) == 1
    assert "cannot start the run on http://127.0.0.1:9" in capsys.readouterr().err
