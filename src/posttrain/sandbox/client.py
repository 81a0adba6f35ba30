"""The stages' side of the code-execution service: programs sent concurrently, retried, timed out."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from posttrain.recipe import SandboxSection

QUEUE_MARGIN_S = 60.0  # on top of a program's timeout: time a request may wait for a free worker


class SandboxServiceError(RuntimeError):
    """The service kept failing after every retry; the message names it. Never scored as a wrong answer:
    a reward of 0 for an outage would teach the policy something false."""


class ServiceRunner:
    def __init__(self, section: SandboxSection, backoff_s: float = 0.5):
        self.section, self.backoff_s = section, backoff_s
        self.url = section.url.rstrip("/")
        health = self._call("GET", "/healthz", None, timeout=10.0)
        self.isolation = f"service ({health['isolation']})"

    def _call(self, method: str, path: str, body: dict | None, timeout: float) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(self.section.retries + 1):
            try:
                request = urllib.request.Request(self.url + path, data=data, method=method,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == self.section.retries:
                    raise SandboxServiceError(f"recipe.sandbox.url {self.url}{path}: HTTP {exc.code} "
                                              f"{exc.read()[:300]!r} after {attempt + 1} attempts") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.section.retries:
                    raise SandboxServiceError(f"recipe.sandbox.url {self.url}{path}: {exc} after "
                                              f"{attempt + 1} attempts") from None
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _one(self, program: str, timeout_s: float) -> bool:
        answer = self._call("POST", "/run", {"code": program, "timeout_s": timeout_s},
                            timeout=timeout_s + QUEUE_MARGIN_S)
        return bool(answer["passed"])

    def run(self, programs: list[str], timeout_s: float | None = None) -> list[bool]:
        timeout = self.section.timeout_s if timeout_s is None else timeout_s
        with ThreadPoolExecutor(self.section.concurrency) as pool:
            return list(pool.map(lambda p: self._one(p, timeout), programs))
