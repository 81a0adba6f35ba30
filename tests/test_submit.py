"""`posttrain submit` against a fake KFP API server on loopback: the requests it sends."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from posttrain import cli
from posttrain.recipe import load

from conftest import ROOT, reply_json
from fake_kube import FakeKubeApi, tulu3_cluster


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


@pytest.fixture
def cluster(s3, monkeypatch, tmp_path):
    """A fake Kubernetes API with all tulu3-8b.yaml names (registry bucket on moto); its kubeconfig."""
    import boto3
    import fsspec.config

    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3})
    boto3.client("s3", endpoint_url=s3).create_bucket(Bucket="posttrain-registry")
    fake = FakeKubeApi(tulu3_cluster())
    yield fake, str(fake.kubeconfig(tmp_path / "kubeconfig"))
    fake.close()


def test_submit_creates_experiment_and_run_with_the_recipe(fake_kfp, cluster, capsys):
    host, requests = fake_kfp
    recipe_path = ROOT / "recipes" / "tulu3-8b.yaml"
    assert cli.main(["submit", str(recipe_path), "--host", host, "--experiment", "tulu", "--run-name", "r1",
                     "--kubeconfig", cluster[1]]) == 0
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


def test_submit_refuses_to_start_a_run_that_fails_preflight(fake_kfp, cluster, capsys):
    host, requests = fake_kfp
    fake, kubeconfig = cluster
    del fake.objects["/api/v1/namespaces/posttrain/secrets/posttrain-judge-api-key"]
    assert cli.main(["submit", str(ROOT / "recipes" / "tulu3-8b.yaml"), "--host", host,
                     "--kubeconfig", kubeconfig]) == 1
    err = capsys.readouterr().err
    assert "Secret posttrain/posttrain-judge-api-key" in err and "submit: not started" in err
    assert requests == []  # the KFP endpoint was never asked


def test_submit_reports_an_unreachable_endpoint_clearly(cluster, capsys):
    assert cli.main(["submit", str(ROOT / "recipes" / "tiny.yaml"), "--host", "http://127.0.0.1:9",
                     "--kubeconfig", cluster[1]]) == 1
    assert "cannot start the run on http://127.0.0.1:9" in capsys.readouterr().err
