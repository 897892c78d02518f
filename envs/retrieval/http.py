"""Client for the Search-R1 retrieval server protocol, so existing e5/faiss or BM25 servers plug in.

``POST <url>/retrieve`` with ``{"queries": [...], "topk": k, "return_scores": true}`` answers
``{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`` where ``contents`` is
``"\\"Title\\"\\ntext"``. ``timeout`` is the total deadline of one call, retries and backoff
included: every socket operation gets only the time left, the answer is read against the same
deadline (a server that trickles bytes is cut off), and a retry starts only if time is left. So a
frozen server costs one ``timeout``, not one per attempt. Connection errors, timeouts and 5xx
answers are retried with exponential backoff within that deadline; then a ``RetrievalError`` says
the search service is unavailable, which the QA environment shows the model as an observation with
an infrastructure status (the episode goes on, the model is not charged). Answers larger than
``max_response_bytes`` are refused.
Only the standard library is used.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from envs.retrieval.base import Passage, RetrievalError, query_batch, split_contents

logger = logging.getLogger(__name__)


class HttpRetriever:
    """A ``Retriever`` backed by a Search-R1-compatible HTTP server."""

    name = "http"

    def __init__(self, url: str, *, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5,
                 max_backoff: float = 4.0, headers: dict[str, str] | None = None,
                 max_response_bytes: int = 64 << 20):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"retriever_url must start with http:// or https://, got {url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, retries and backoff >= 0")
        url = url.rstrip("/")
        self.url = url if url.endswith("/retrieve") else url + "/retrieve"
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_response_bytes = int(max_response_bytes)
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    @property
    def max_call_seconds(self) -> float:
        """An upper bound on one ``search_many`` call, for the env's hard tool timeout."""
        # Socket operations get only the time left, so the deadline holds up to scheduling slack;
        # only a server trickling its *headers* byte by byte can stretch one attempt further, and
        # the env's hard tool timeout (this bound plus a margin) covers that case.
        return self.timeout + 0.5

    def search(self, query: str, k: int = 5) -> list[Passage]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[Passage]]:
        queries = query_batch(queries, k)
        if not queries:
            return []
        payload = json.dumps({"queries": queries, "topk": int(k), "return_scores": True}).encode("utf-8")
        body = self._post(payload)
        return parse_response(body, len(queries), k)

    def _post(self, payload: bytes) -> Any:
        last = "no attempt made"
        deadline = time.monotonic() + self.timeout
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                pause = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            left = deadline - time.monotonic()
            if left <= 0.01:
                break
            attempts += 1
            request = urllib.request.Request(self.url, data=payload, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=left) as response:
                    raw = self._read_body(response, deadline)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace") if exc.fp is not None else ""
                last = f"HTTP {exc.code} {exc.reason}: {detail}".strip()
                if exc.code < 500:  # the request itself is wrong: retrying cannot help
                    raise RetrievalError(f"retrieval server {self.url} rejected the request: {last}") from None
                continue
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
                logger.debug("retrieval request %d to %s failed: %s", attempt + 1, self.url, last)
                continue
            try:
                return json.loads(raw)
            except ValueError:
                last = "the answer is not JSON"
                continue
        raise RetrievalError(f"the search service is unavailable: retrieval server {self.url} did not answer "
                             f"within {self.timeout:g}s ({attempts} attempt(s); {last})")

    def _read_body(self, response: Any, deadline: float) -> bytes:
        """The answer's bytes, read in chunks so a trickling server cannot hold the call past ``deadline``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the answer took longer than {self.timeout:g}s to arrive")
            _set_socket_timeout(response, left)
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_response_bytes:
                raise RetrievalError(f"the answer from retrieval server {self.url} exceeds "
                                     f"{self.max_response_bytes} bytes")
            chunks.append(chunk)


def _set_socket_timeout(response: Any, seconds: float) -> None:
    """Shrink the socket timeout of an open answer to the time left (best effort: private attributes)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(0.001, seconds))
        except OSError:
            pass


def _passage(entry: Any) -> Passage:
    if not isinstance(entry, dict):
        raise RetrievalError(f"malformed retrieval result entry: {entry!r:.200}")
    doc = entry.get("document", entry)
    if not isinstance(doc, dict):
        raise RetrievalError(f"malformed retrieval document: {doc!r:.200}")
    score = entry.get("score", 0.0) if "document" in entry else doc.get("score", 0.0)
    if doc.get("text") is not None:
        title, text = str(doc.get("title") or ""), str(doc["text"])
    else:
        title, text = split_contents(str(doc.get("contents", "")))
        if doc.get("title"):
            title = str(doc["title"])
    pid = doc.get("id", doc.get("doc_id", ""))
    try:
        score = float(score)
    except (TypeError, ValueError):
        score = 0.0
    return Passage(id=str(pid), title=title, text=text, score=score)


def parse_response(body: Any, n_queries: int, k: int) -> list[list[Passage]]:
    """Read a ``/retrieve`` answer; anything off-protocol becomes a ``RetrievalError``."""
    if not isinstance(body, dict) or not isinstance(body.get("result"), list):
        raise RetrievalError("malformed answer from the retrieval server (no 'result' list)")
    result = body["result"]
    if len(result) != n_queries:
        raise RetrievalError(f"the retrieval server answered {len(result)} result lists for {n_queries} queries")
    out = []
    for hits in result:
        if not isinstance(hits, list):
            raise RetrievalError("malformed answer from the retrieval server (a result is not a list)")
        out.append([_passage(h) for h in hits[:k]])
    return out
