"""A retrieval server speaking the Search-R1 protocol over any backend (FastAPI + uvicorn).

Rollout workers on many nodes then share one index instead of loading it in every process:
``python -m envs.retrieval serve --corpus corpus.jsonl --backend bm25 --port 8000`` and make the
envs with ``retriever="http", retriever_url="http://host:8000"``. Requests carry ``queries`` (a
list, Search-R1) or ``query`` (a string or list, SkyRL's search tool); the answer is always
``{"result": [[...] per query]}``, with ``{"document": {"id", "contents", "title", "text"}, "score"}``
entries when ``return_scores`` is true and bare documents otherwise.

This module imports fastapi at import time; ``envs.retrieval`` never imports it eagerly.
"""

import logging
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from envs.retrieval.base import Passage, RetrievalError, Retriever

logger = logging.getLogger(__name__)


class RetrieveRequest(BaseModel):
    queries: list[str] | None = None
    query: str | list[str] | None = None
    topk: int | None = None
    return_scores: bool = False


def _document(p: Passage) -> dict[str, Any]:
    return {"id": p.id, "contents": p.contents, "title": p.title, "text": p.text}


def create_app(retriever: Retriever, *, default_topk: int = 3, max_topk: int = 100, max_queries: int = 1024) -> FastAPI:
    """The FastAPI app serving ``retriever`` at ``POST /retrieve`` (and ``GET /health``)."""
    app = FastAPI(title="agentr1-gym retrieval", version="1")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backend": getattr(retriever, "name", type(retriever).__name__)}

    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest) -> dict[str, Any]:
        queries: list[str] = []
        if request.queries is not None:
            queries.extend(request.queries)
        if request.query is not None:
            queries.extend([request.query] if isinstance(request.query, str) else request.query)
        if not queries:
            raise HTTPException(status_code=422, detail="send 'queries' (a list of strings) or 'query'")
        if len(queries) > max_queries:
            raise HTTPException(status_code=413, detail=f"at most {max_queries} queries per request")
        k = default_topk if request.topk is None else request.topk
        if not 1 <= k <= max_topk:
            raise HTTPException(status_code=422, detail=f"topk must be in 1..{max_topk}")
        started = time.perf_counter()
        try:
            found = retriever.search_many(queries, k)
        except RetrievalError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        logger.debug("served %d queries in %.3fs", len(queries), time.perf_counter() - started)
        if request.return_scores:
            result = [[{"document": _document(p), "score": p.score} for p in hits] for hits in found]
        else:
            result = [[_document(p) for p in hits] for hits in found]
        return {"result": result}

    return app


class BackgroundServer:
    """A uvicorn server on its own thread (tests, notebooks, a trainer that hosts the index itself)."""

    def __init__(self, retriever: Retriever, *, host: str = "127.0.0.1", port: int = 0, **app_kwargs: Any):
        config = uvicorn.Config(create_app(retriever, **app_kwargs), host=host, port=port, log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="agentr1-retrieval-server", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the retrieval server did not start")
            time.sleep(0.02)
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(retriever: Retriever, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          **app_kwargs: Any) -> None:
    """Serve ``retriever`` in the foreground until interrupted."""
    uvicorn.run(create_app(retriever, **app_kwargs), host=host, port=port, log_level=log_level)
