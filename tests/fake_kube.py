"""A fake Kubernetes API server on loopback: GETs of the objects it holds, 404 for the rest.

Objects are keyed by their API path (`/api/v1/namespaces/posttrain/secrets/x`); a list path (`/api/v1/nodes`)
answers the objects under it that match the request's `labelSelector` (equality terms only). `forbidden` paths
answer 403, as to an account without the right Role. `requests` records (method, path) of every call.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from conftest import reply_json


def _matches(obj: dict, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in (term.split("=", 1) for term in selector.split(",") if term))


class FakeKubeApi:
    def __init__(self, objects: dict[str, dict] | None = None, forbidden: set[str] = frozenset()):
        self.objects, self.forbidden, self.requests = dict(objects or {}), set(forbidden), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                fake.requests.append(("GET", url.path))
                if url.path in fake.forbidden:
                    return reply_json(self, {"kind": "Status", "code": 403, "reason": "Forbidden"}, 403)
                if url.path in fake.objects:
                    return reply_json(self, fake.objects[url.path])
                below = [obj for path, obj in fake.objects.items() if path.rsplit("/", 1)[0] == url.path]
                if below or url.path == "/api/v1/nodes":
                    selector = parse_qs(url.query).get("labelSelector", [""])[0]
                    return reply_json(self, {"kind": "List", "apiVersion": "v1",
                                             "items": [o for o in below if _matches(o, selector)]})
                reply_json(self, {"kind": "Status", "code": 404, "reason": "NotFound"}, 404)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def client(self):
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    def kubeconfig(self, path, namespace: str = "posttrain"):
        """A kubeconfig file whose current context is this server (and `namespace`)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "me", "user": {"token": "t"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me", "namespace": namespace}}]}))
        return path

    def close(self):
        self.server.shutdown()


GPU_LABEL = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}  # recipes/tulu3-8b.yaml's node selector


def tulu3_cluster(namespace: str = "posttrain") -> dict[str, dict]:
    """A cluster holding everything recipes/tulu3-8b.yaml names (its registry: a bucket the test provides)."""
    ns = f"/api/v1/namespaces/{namespace}"
    secret = lambda name, *keys: (f"{ns}/secrets/{name}", {"metadata": {"name": name},  # noqa: E731
                                                           "data": {k: "eA==" for k in keys}})
    service = lambda where, name: {f"{where}/services/{name}": {"metadata": {"name": name}},  # noqa: E731
                                   f"{where}/endpoints/{name}": {"subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]}}
    objects = dict([
        (ns, {"metadata": {"name": namespace, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
        secret("posttrain-hf-token", "token"), secret("posttrain-judge-api-key", "api_key"),
        secret("posttrain-s3-credentials", "access_key_id", "secret_access_key"),
        (f"{ns}/persistentvolumeclaims/posttrain-checkpoints",
         {"spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "filestore-rwx"},
          "status": {"phase": "Bound"}}),
        ("/apis/storage.k8s.io/v1/storageclasses/filestore-rwx", {"provisioner": "filestore.csi.storage.gke.io"}),
        ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trainjobs.trainer.kubeflow.org", {}),
        ("/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/torch-distributed", {}),
    ])
    for node in range(8):  # sft: 8 nodes x 8 GPUs
        objects[f"/api/v1/nodes/gpu-{node}"] = {"metadata": {"name": f"gpu-{node}", "labels": GPU_LABEL},
                                                "status": {"allocatable": {"nvidia.com/gpu": "8", "cpu": "208"}}}
    objects |= service(ns, "posttrain-sandbox") | service("/api/v1/namespaces/mlflow", "mlflow")
    return objects
