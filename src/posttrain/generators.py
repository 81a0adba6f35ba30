"""Text generators behind one interface: `generator(requests) -> list[str]`, one answer per request.

- `openai`: any OpenAI-compatible chat endpoint (a vLLM server, a hosted API). Requests run concurrently;
  5xx, 429 and connection errors are retried with exponential backoff; answers are cached on disk by the
  hash of the request, so a rerun (or a retried pipeline task) sends nothing it already has an answer for.
- `transformers`: a local causal LM through `posttrain.generation` (batched, length-sorted).

The `template` backend of the data stage needs no generator: it writes text from structured templates
(`posttrain.data.synthesis`).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Request:
    messages: tuple[dict, ...]  # chat messages, {"role", "content"}
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0  # part of the cache key: ask again with another seed to get a fresh answer

    @classmethod
    def user(cls, content: str, **kwargs) -> "Request":
        return cls(messages=({"role": "user", "content": content},), **kwargs)


class Generator(Protocol):
    def __call__(self, requests: list[Request]) -> list[str]: ...


class GeneratorError(RuntimeError):
    """An endpoint that kept failing after every retry; the message names it and the last status."""


@dataclass
class OpenAIGenerator:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    retries: int = 4
    backoff_s: float = 1.0  # doubled after each failed attempt
    timeout_s: float = 120.0
    cache_dir: str | None = None  # one JSON file per request hash
    sent: int = field(default=0, init=False)  # requests that reached the endpoint and were answered
    cache_hits: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)  # the counters, across threads

    def _body(self, request: Request) -> dict:
        body = {"model": self.model, "messages": list(request.messages), "temperature": request.temperature,
                "max_tokens": request.max_tokens}
        return body | ({"seed": request.seed} if request.seed else {})

    def _cache_path(self, body: dict) -> Path | None:
        if not self.cache_dir:
            return None
        key = hashlib.sha256(json.dumps({"url": self.base_url, **body}, sort_keys=True).encode()).hexdigest()
        return Path(self.cache_dir) / key[:2] / f"{key}.json"

    def _post(self, body: dict) -> str:
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"}
        for attempt in range(self.retries + 1):
            try:
                request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    answer = json.loads(response.read())["choices"][0]["message"]["content"]
                with self._lock:
                    self.sent += 1
                return answer
            except urllib.error.HTTPError as exc:
                if (exc.code < 500 and exc.code != 429) or attempt == self.retries:
                    raise GeneratorError(f"{url}: HTTP {exc.code} after {attempt + 1} attempts") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.retries:
                    raise GeneratorError(f"{url}: {exc} after {attempt + 1} attempts") from None
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _one(self, request: Request) -> str:
        body = self._body(request)
        path = self._cache_path(body)
        if path is not None and path.exists():
            with self._lock:
                self.cache_hits += 1
            return json.loads(path.read_text())["answer"]
        answer = self._post(body)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{id(request)}.tmp")
            partial.write_text(json.dumps({"request": body, "answer": answer}))
            partial.replace(path)  # atomic: a crash never leaves a half-written answer in the cache
        return answer

    def __call__(self, requests: list[Request]) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, requests))


class TransformersGenerator:
    def __init__(self, path: str, batch_size: int = 32, trust_remote_code: bool = False):
        from posttrain.generation import load

        self.model, self.tokenizer = load(path, trust_remote_code)
        self.batch_size = batch_size

    def __call__(self, requests: list[Request]) -> list[str]:
        from posttrain.generation import generate

        answers: list[str] = [""] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):  # one generate call per sampling setting
            groups.setdefault((request.temperature, request.max_tokens, request.seed), []).append(index)
        for (temperature, max_tokens, seed), indices in groups.items():
            found = generate(self.model, self.tokenizer, [list(requests[i].messages) for i in indices],
                             max_new_tokens=max_tokens, batch_size=self.batch_size, temperature=temperature, seed=seed)
            for i, samples in zip(indices, found):
                answers[i] = samples[0]
        return answers


def from_config(backend: str, *, model: str, url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                cache_dir: str | None = None, concurrency: int = 8) -> Generator:
    if backend == "openai":
        if not url:
            raise ValueError("generator backend openai needs a url (an OpenAI-compatible endpoint)")
        return OpenAIGenerator(url, model, api_key_env, concurrency=concurrency, cache_dir=cache_dir)
    if backend == "transformers":
        return TransformersGenerator(model)
    raise ValueError(f"unknown generator backend {backend!r}; expected openai or transformers")


