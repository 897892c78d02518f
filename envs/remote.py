"""``AgentR1/Remote-v0``: an env served by ``python -m envs serve``, used as a local Gymnasium env.

``gym.make("AgentR1/Remote-v0", url="http://host:8000", env_id="AgentR1/Math-v0")`` opens one
WebSocket session (one env instance on the server) and behaves like ``gym.make("AgentR1/Math-v0")``:
the same spaces, observations, rewards, ``info`` (reward components, metrics), errors for misuse
(``ResetNeeded``, ``DataError``), ``reset(options={"item": ...})``, ``demonstration()``,
``reward_weights`` and, for an item-list env, ``items`` (read through the server's task API).

Several URLs spread sessions over several server processes: each env picks one from its process id
and a per-process counter (so ``make_vec`` workers and threads spread out) and fails over to the
others when it cannot connect.

With ``record_path=`` (or ``$AGENTR1_RECORD_SESSIONS``, which reaches envs made by any CLI with
``--env-url``), every episode the session plays is appended to that JSONL file as an episode record
(``envs.core.records``; ``python -m envs view FILE`` shows them), also one abandoned by an early
``reset`` or ``close``.

Infrastructure faults are never charged to the model. A server that vanishes mid-episode ends the
episode on the next ``step`` with ``truncated=True``, reward 0, ``info["env_error"] = True`` and
``metrics["env_error"] = 1.0`` (trainers drop such episodes), never an exception; the next ``reset``
reconnects (a restarted server just works) or raises ``RemoteEnvError`` saying which servers failed.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import gymnasium as gym

from envs.core.data import DataError
from envs.core.env import coerce_action, format_transcript, render_text
from envs.core.records import RECORD_SESSIONS_VARIABLE, EpisodeRecorder, append_episode_records
from envs.core.spaces import UnicodeText
from envs.core.tools import Tool, ToolError
from envs.server import wire

_COUNTER = itertools.count()
_COUNTER_LOCK = threading.Lock()

# Exceptions an env raises for misuse; the remote env raises the same class.
_MIRRORED: dict[str, type[Exception]] = {
    "ResetNeeded": gym.error.ResetNeeded, "DataError": DataError, "IndexError": IndexError, "ValueError": ValueError,
    "TypeError": TypeError, "KeyError": KeyError, "NotImplementedError": NotImplementedError,
}


def _schema_only_tool(function: Mapping[str, Any]) -> Tool:
    def runs_on_the_server(**_: Any) -> str:
        raise ToolError("this tool runs on the env server, inside an episode: call it in a step")

    return Tool(name=str(function["name"]), description=str(function.get("description", "")),
                parameters=dict(function.get("parameters") or {}), fn=runs_on_the_server)


class RemoteEnvError(ConnectionError):
    """The env server could not be reached or refused the session (an infrastructure fault)."""


class _Lost(Exception):
    """The connection dropped while a call was in flight."""


def ws_url(url: str) -> str:
    """``http(s)://host:port[/prefix]`` or ``ws(s)://...`` -> the session endpoint ``ws(s)://host:port[/prefix]/ws``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"env server URL must be http(s):// or ws(s)://, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class RemoteItems(Sequence):
    """A served env's item list, read through the server's task API (``POST /{name}/task_range``).

    Its length comes with the session's spec, so ``len(env.unwrapped.items)`` (how trainers tell an
    item-list env from a generated one, and count its items) costs no request; items are fetched
    once, all together, the first time one is read.
    """

    def __init__(self, base_url: str, name: str, count: int, timeout: float):
        self._endpoint = f"{base_url}/{quote(name, safe='')}/task_range"
        self._count = count
        self._timeout = timeout
        self._items: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # type: ignore[override]
        return self._load()[index]

    def _load(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._items is None:
                request = urllib.request.Request(self._endpoint, data=json.dumps({"start": 0, "stop": self._count}).encode(),
                                                 headers={"Content-Type": "application/json"})
                try:
                    # no proxies, as for the WebSocket sessions: env servers sit on the cluster's own network
                    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                    with opener.open(request, timeout=self._timeout) as response:
                        self._items = list(json.loads(response.read())["tasks"])
                except OSError as exc:
                    raise RemoteEnvError(f"could not read the items from {self._endpoint}: {exc}") from None
            return self._items


def http_url(url: str) -> str:
    """A session endpoint ``ws(s)://host:port[/prefix]/ws`` -> its HTTP base ``http(s)://host:port[/prefix]``."""
    parts = urlsplit(url)
    return urlunsplit(({"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme), parts.netloc,
                       parts.path.removesuffix("/ws"), "", ""))


class RemoteEnv(gym.Env[str, str]):
    """A session on an OpenEnv-protocol env server (see the module docstring)."""

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 1}

    def __init__(self, url: str | Sequence[str] = "http://127.0.0.1:8000", env_id: str | None = None,
                 env_kwargs: Mapping[str, Any] | None = None, *, connect_timeout: float = 10.0,
                 step_timeout: float = 600.0, render_mode: str | None = None,
                 record_path: str | os.PathLike[str] | None = None):
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("RemoteEnv needs at least one server URL")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.urls = [ws_url(u) for u in urls]
        self.env_id_requested = env_id
        self.env_kwargs = dict(env_kwargs) if env_kwargs is not None else None
        self.connect_timeout = float(connect_timeout)
        self.step_timeout = float(step_timeout)
        self.render_mode = render_mode
        record_path = record_path if record_path is not None else os.environ.get(RECORD_SESSIONS_VARIABLE) or None
        self.record_path = None if record_path is None else os.fspath(record_path)
        self._recorder: EpisodeRecorder | None = None
        with _COUNTER_LOCK:
            self._first = (os.getpid() + next(_COUNTER)) % len(self.urls)
        self._ws: Any = None
        self.url: str | None = None
        self._episode_active = False
        self._messages: list[dict[str, str]] = []
        self._item: dict[str, Any] | None = None
        self._connect()  # fails here, at make time, if no server serves this env
        spec = self.server_spec
        self.env_id: str = spec["env_id"]
        self.max_turns: int = int(spec["max_turns"])
        self.max_action_chars: int = int(spec["max_action_chars"])
        # The server env's tools by name, with their schemas (they run on the server, inside episodes).
        self.tools: dict[str, Tool] = {t["function"]["name"]: _schema_only_tool(t["function"]) for t in spec["tools"]}
        self.observation_space = UnicodeText(max_length=int(spec["observation_max_length"]))
        self.action_space = UnicodeText(max_length=int(spec["action_max_length"]))
        self.reward_weights: dict[str, float] = {k: float(v) for k, v in (spec.get("reward_weights") or {}).items()}
        num_items = spec.get("num_items")
        # As on a local env: an item-list env has ``items``, a generated one none (``getattr(..., None)``).
        self.items: RemoteItems | None = None if num_items is None else RemoteItems(
            http_url(self.url or self.urls[0]), self.env_id.split("/")[-1], int(num_items), self.step_timeout)

    # ------------------------------------------------------------------ connection
    def _query(self) -> str:
        params = []
        if self.env_id_requested:
            params.append("env_id=" + quote(self.env_id_requested, safe=""))
        if self.env_kwargs is not None:
            params.append("env_kwargs=" + quote(json.dumps(self.env_kwargs, sort_keys=True), safe=""))
        return "&".join(params)

    def _connect(self) -> None:
        """Open a session on the first server (in this env's order) that accepts one, and read its spec."""
        try:
            from websockets.exceptions import WebSocketException
            from websockets.sync.client import connect
        except ImportError as exc:
            raise ImportError("AgentR1/Remote-v0 needs websockets: pip install 'agentr1-gym[server]'") from exc

        self._drop()
        failures = []
        order = self.urls[self._first:] + self.urls[:self._first]
        query = self._query()
        for base in order:
            target = f"{base}{'&' if '?' in base else '?'}{query}" if query else base
            try:
                # Entered like a context manager (closed in _drop), as websockets >= 17.1 asks.
                ws = connect(target, open_timeout=self.connect_timeout, max_size=None, compression=None,
                             proxy=None, close_timeout=2).__enter__()
            except (OSError, TimeoutError, WebSocketException) as exc:
                failures.append(f"{base}: {type(exc).__name__}: {exc}")
                continue
            self._ws, self.url = ws, base
            try:
                reply = self._call({"type": wire.SPEC})
            except _Lost as exc:
                failures.append(f"{base}: connection lost ({exc})")
                self._drop()
                continue
            if reply.get("type") == "error":
                self._drop()
                data = reply.get("data") or {}
                # A refusal that names this env (wrong id or kwargs) is final; capacity may be free elsewhere.
                if data.get("code") != wire.CAPACITY_REACHED:
                    raise RemoteEnvError(f"{base} refused the session: {data.get('message')} ({data.get('code')})")
                failures.append(f"{base}: {data.get('message')} ({data.get('code')})")
                continue
            self.server_spec: dict[str, Any] = reply["data"]
            return
        raise RemoteEnvError("no env server accepted a session: " + "; ".join(failures))

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass

    def _call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one frame and read its answer; ``_Lost`` if the connection is gone."""
        from websockets.exceptions import ConnectionClosed, WebSocketException

        if self._ws is None:
            raise _Lost("not connected")
        try:
            try:
                self._ws.send(json.dumps(message, ensure_ascii=True))
            except ConnectionClosed:
                pass  # a refused session sends its error frame, then closes: read the frame if it is there
            raw = self._ws.recv(timeout=self.step_timeout)
            return json.loads(raw)
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            self._drop()
            raise _Lost(f"{type(exc).__name__}: {exc}") from None

    def _request(self, message: Mapping[str, Any], expect: str) -> dict[str, Any]:
        """``_call`` whose error frames become the env's own exceptions."""
        reply = self._call(message)
        if reply.get("type") == "error":
            data = reply.get("data") or {}
            exc_type = _MIRRORED.get(str(data.get("exception")))
            text = str(data.get("message", ""))
            if exc_type is not None:
                prefix = f"{data.get('exception')}: "
                raise exc_type(text[len(prefix):] if text.startswith(prefix) else text)
            if data.get("code") == wire.SESSION_ERROR:  # reaped or shutting down: the session is gone
                self._drop()
                raise _Lost(text)
            raise RemoteEnvError(f"{self.url}: {text} ({data.get('code')})")
        if reply.get("type") != expect:
            raise RemoteEnvError(f"{self.url}: expected a {expect!r} frame, got {reply.get('type')!r}")
        return reply["data"]

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        message = {"type": "reset", "data": {"seed": seed, "options": options}}
        self._episode_active = False
        self._save_recording()
        for attempt in range(2):  # a dropped connection (server restarted) gets one fresh session
            try:
                if self._ws is None:
                    self._connect()
                data = self._request(message, "observation")
                break
            except _Lost as exc:
                if attempt:
                    raise RemoteEnvError(f"lost the env server at {self.url} during reset: {exc}") from None
        obs, _, _, _, info = wire.step_result(data)
        self._episode_active = True
        self._messages = [dict(m) for m in info.get("messages", [])]
        self._item = info.get("item")
        if self.record_path is not None:
            where = {k: v for k, v in (options or {}).items() if k == "index"}
            self._recorder = EpisodeRecorder(info, source={"kind": "remote", "env": self.env_id, "url": self.url,
                                                           "seed": seed, **where})
        if self.render_mode == "human":
            self.render()
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not self._episode_active:
            raise gym.error.ResetNeeded("call reset() before step()" if self._item is None else
                                        "the episode is over; call reset() before step()")
        text = coerce_action(action, self.max_action_chars)  # what the env would keep, so frames stay small
        try:
            data = self._request({"type": "step", "data": {wire.ACTION_FIELD: text}}, "observation")
        except _Lost as exc:
            result = self._infrastructure_fault(str(exc))
            self._record_step(text, result)
            return result
        obs, reward, terminated, truncated, info = wire.step_result(data)
        self._messages.append({"role": "assistant", "content": text})
        self._messages.extend(dict(m) for m in info.get("new_messages", []))
        if terminated or truncated:
            self._episode_active = False
        self._record_step(text, (obs, reward, terminated, truncated, info))
        if self.render_mode == "human":
            self.render()
        return obs, reward, terminated, truncated, info

    def _record_step(self, action: str | None, result: tuple[str, float, bool, bool, dict[str, Any]]) -> None:
        """Add a step to the session recording (if on); save the episode once it is over."""
        if self._recorder is None:
            return
        obs, reward, terminated, truncated, info = result
        self._recorder.step(action, obs, reward, terminated, truncated, info)
        if self._recorder.done:
            self._save_recording()

    def _save_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None and self.record_path is not None and recorder.turns:
            append_episode_records(self.record_path, [recorder.record()])

    def _infrastructure_fault(self, why: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """End the episode neutrally: the server, not the model, failed."""
        self._episode_active = False
        self._drop()
        message = f"lost the env server at {self.url}: {why}"
        metrics = {"acc": 0.0, "format": 0.0, "turns": 0.0, "env_error": 1.0}
        return "", 0.0, False, True, {"reward_components": {}, "episode_reward_components": {}, "metrics": metrics,
                                      "env_error": True, "end_reason": "env_server_lost", "error": message,
                                      "new_messages": []}

    def demonstration(self) -> list[str]:
        """The server env's golden actions for the current episode."""
        try:
            return list(self._request({"type": wire.DEMONSTRATION}, wire.DEMONSTRATION)["actions"])
        except _Lost as exc:
            raise RemoteEnvError(f"lost the env server at {self.url}: {exc}") from None

    def end_unfinished(self, reason: str = "budget") -> tuple[float, dict[str, Any]]:
        """End the episode without a final answer (the server env's ``end_unfinished``)."""
        if not self._episode_active:
            raise gym.error.ResetNeeded("no episode is running")
        try:
            data = self._request({"type": wire.END_UNFINISHED, "data": {"reason": reason}}, wire.END_UNFINISHED)
        except _Lost as exc:
            _, reward, _, _, info = self._infrastructure_fault(str(exc))
        else:
            self._episode_active = False
            reward, info = float(data["reward"]), dict(data["info"])
        self._record_step(None, ("", reward, False, True, info))
        return reward, info

    def state(self) -> dict[str, Any]:
        """The server's view of this session (OpenEnv ``state``: episode id, step count, flags)."""
        try:
            return self._request({"type": "state"}, "state")
        except _Lost as exc:
            raise RemoteEnvError(f"lost the env server at {self.url}: {exc}") from None

    @property
    def item(self) -> dict[str, Any]:
        if self._item is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self._item

    def transcript(self) -> str:
        return format_transcript(self._messages)

    def render(self) -> str | None:
        return render_text(self.transcript(), self.render_mode)

    def close(self) -> None:
        self._save_recording()
        if self._ws is not None:
            try:
                self._ws.send(json.dumps({"type": "close"}))
            except Exception:
                pass
        self._drop()
        super().close()
