"""The code-execution service: model-written programs run here, in their own locked-down pod, not in a stage.

    python -m posttrain.sandbox.service --port 8080 [--allow-pod-isolation]

POST /run  {"code": str, "tests": str (optional, appended), "timeout_s": float (optional, capped)}
       ->  {"passed": bool, "isolation": str, "seconds": float}
GET  /healthz -> {"isolation": str, "workers": int}

Each program runs in bubblewrap (sandbox/local.py), as in a local run with it. A pod under the default seccomp
profile (Pod Security "restricted") may not create the namespaces bubblewrap needs; with
`--allow-pod-isolation` the service then relies on the pod (no service-account token, egress denied by its
NetworkPolicy, read-only root, an emptyDir /tmp, non-root, its own CPU and memory limits) and confines each
program with Landlock and a seccomp filter where the kernel has Landlock (its own directory and the
interpreter only, no socket, no signals beyond itself; sandbox/local.py): it says "pod+landlock", or "pod"
with rlimits and the timeout alone.
Without the flag it refuses to start.
Limits default to `recipe.sandbox`'s defaults; a request may shorten the timeout, never lengthen it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from posttrain.recipe import SandboxSection
from posttrain.sandbox import local

MAX_BODY = 1 << 20  # bytes; a program and its tests


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], limits: local.Limits, isolation: str, workers: int):
        super().__init__(address, Handler)
        self.limits, self.isolation, self.workers = limits, isolation, workers
        self.slots = threading.BoundedSemaphore(workers)  # programs running at once; the rest queue


class Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    timeout = 60  # seconds a client may take to send its request: a stalled one does not hold a thread forever

    def log_message(self, format: str, *args) -> None:  # one line per request on stderr, without the body
        sys.stderr.write(f"sandbox: {self.address_string()} {format % args}\n")

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path != "/healthz":
            return self._reply(404, {"error": f"no such path {self.path}; POST /run, GET /healthz"})
        self._reply(200, {"isolation": self.server.isolation, "workers": self.server.workers})

    def do_POST(self) -> None:
        if self.path != "/run":
            return self._reply(404, {"error": f"no such path {self.path}; POST /run, GET /healthz"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return self._reply(413, {"error": f"Content-Length {length}; 0 to {MAX_BODY} bytes"})
        try:
            request = json.loads(self.rfile.read(length))
            code, tests = request["code"], request.get("tests", "")
            timeout = float(request.get("timeout_s", self.server.limits.timeout_s))
            if not isinstance(code, str) or not isinstance(tests, str) or not timeout > 0:
                raise ValueError("code and tests must be text, timeout_s a positive number")
        except (ValueError, KeyError, TypeError) as exc:
            return self._reply(400, {"error": f"request: {exc!r}; expected {{code, tests?, timeout_s?}}"})
        limits = dataclasses.replace(self.server.limits, timeout_s=min(timeout, self.server.limits.timeout_s))
        start = time.perf_counter()
        with self.server.slots:
            passed = local.run(f"{code}\n\n{tests}\n" if tests else code, limits, MODES[self.server.isolation])
        self._reply(200, {"passed": passed, "isolation": self.server.isolation,
                          "seconds": round(time.perf_counter() - start, 3)})


MODES = {"bwrap": "bwrap", "pod+landlock": "landlock", "pod": "none"}  # what the service says -> local mode


def isolation(allow_pod_isolation: bool) -> str:
    """"bwrap" when programs can be boxed here; when allowed to rely on the pod, "pod+landlock" (files, TCP
    and signals confined per program, where the kernel has Landlock) or "pod"; else SystemExit."""
    problem = local.probe()
    if problem is None:
        return "bwrap"
    if allow_pod_isolation:
        no_landlock = local.probe_landlock()
        print(f"sandbox: {problem}; relying on the pod's isolation (--allow-pod-isolation)"
              + (f", without Landlock: {no_landlock}" if no_landlock else ", and Landlock per program"),
              file=sys.stderr)
        return "pod" if no_landlock else "pod+landlock"
    raise SystemExit(f"sandbox: {problem}; refusing to run programs unboxed (pass --allow-pod-isolation "
                     "only inside the locked-down pod of manifests/base/sandbox.yaml)")


def serve(host: str, port: int, limits: local.Limits, workers: int, allow_pod_isolation: bool = False) -> SandboxServer:
    """A started server (in a background thread); `server.server_address` has the bound port."""
    server = SandboxServer((host, port), limits, isolation(allow_pod_isolation), workers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    defaults = SandboxSection()
    parser = argparse.ArgumentParser(prog="python -m posttrain.sandbox.service", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=defaults.concurrency, help="programs running at once")
    parser.add_argument("--timeout-s", type=float, default=defaults.timeout_s, help="per program, the most a request gets")
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb)
    parser.add_argument("--max-processes", type=int, default=defaults.max_processes)
    parser.add_argument("--max-file-mb", type=int, default=defaults.max_file_mb)
    parser.add_argument("--allow-pod-isolation", action="store_true",
                        help="when bubblewrap cannot start, rely on the pod's isolation (say 'pod')")
    args = parser.parse_args(argv)
    limits = local.Limits(args.timeout_s, args.memory_mb, args.max_processes, args.max_file_mb)
    server = SandboxServer((args.host, args.port), limits, isolation(args.allow_pod_isolation), args.workers)
    print(f"sandbox: serving on {args.host}:{args.port}, isolation {server.isolation}, {args.workers} workers",
          file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
