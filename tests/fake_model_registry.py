"""A Kubeflow Model Registry REST API in memory on loopback: the v1 endpoints that `model-registry`'s
`register_model`, `get_model_version`, `get_registered_model` and `update` call (read from the client, 0.3.18),
answering with the fields the client's models require. Every request is kept in `.requests`."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from conftest import reply_json

BASE = "/api/model_registry/v1"


class FakeModelRegistry:
    def __init__(self):
        self.models, self.versions, self.artifacts, self.requests = {}, {}, {}, []

    def _new(self, store, body, **extra):
        now = str(int(time.time() * 1000))
        item = {**body, **extra, "id": str(len(self.models) + len(self.versions) + len(self.artifacts) + 1),
                "createTimeSinceEpoch": now, "lastUpdateTimeSinceEpoch": now}
        item.setdefault("customProperties", {})
        store[item["id"]] = item
        return item

    def handle(self, method, path, query, body):
        self.requests.append((method, path, query, body))
        if method == "GET" and path == f"{BASE}/registered_model":
            found = [m for m in self.models.values() if m["name"] == query.get("name")]
            return (200, found[0]) if found else (404, {"code": "404", "message": "not found"})
        if method == "GET" and path == f"{BASE}/registered_models":  # the client's connection check
            items = list(self.models.values())
            return 200, {"items": items, "size": len(items), "pageSize": 100, "nextPageToken": ""}
        if method == "POST" and path == f"{BASE}/registered_models":
            return 201, self._new(self.models, body, state="LIVE")
        if method == "GET" and path == f"{BASE}/model_version":
            found = [v for v in self.versions.values()
                     if v["name"] == query.get("name") and v["registeredModelId"] == query.get("parentResourceId")]
            return (200, found[0]) if found else (404, {"code": "404", "message": "not found"})
        if method == "POST" and path.startswith(f"{BASE}/registered_models/") and path.endswith("/versions"):
            return 201, self._new(self.versions, body, registeredModelId=path.split("/")[-2], state="LIVE")
        if method == "POST" and path == f"{BASE}/model_versions":
            return 201, self._new(self.versions, body, state="LIVE")
        if method == "POST" and path.startswith(f"{BASE}/model_versions/") and path.endswith("/artifacts"):
            return 201, self._new(self.artifacts, body, artifactType="model-artifact", state="LIVE")
        if method == "PATCH" and path.startswith(f"{BASE}/registered_models/"):
            model = self.models[path.rsplit("/", 1)[1]]
            model.update({k: v for k, v in body.items() if k != "id"})
            return 200, model
        return 404, {"code": "404", "message": f"{method} {path} not faked"}

    def start(self) -> str:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, answer = registry.handle(self.command, url.path,
                                                 {k: v[0] for k, v in parse_qs(url.query).items()}, body)
                reply_json(self, answer, status)

            do_GET = do_POST = do_PATCH = _reply

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"
