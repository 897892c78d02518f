"""Registering environments in Gymnasium's registry, short aliases, and entry-point plugins.

Ids are ``AgentR1/<Name>-v<N>`` in Gymnasium's own registry, so ``gym.make`` and ``gym.make_vec``
work unchanged. Aliases (``math-v0``) serve command-line ``--env`` flags. Third-party packages declare
an entry point in the ``agentr1_gym.envs`` group (a module, or a callable that registers); loading
plugins on ``import envs`` means Ray and torchrun workers see them with no extra code.

``make`` is also the one place that decides where an env runs: in this process, or on env servers
(``python -m envs serve``) named by ``env_url`` or ``$AGENTR1_ENV_URL``, as ``AgentR1/Remote-v0``.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym

from envs.core.layout import INSTALLED_PACKAGE

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "agentr1_gym.envs"
NAMESPACE = "AgentR1"
REMOTE_ENV_ID = "AgentR1/Remote-v0"
ENV_URL_VARIABLE = "AGENTR1_ENV_URL"
# ``gym.make`` options that shape the made env itself, not the env's constructor; a remote env keeps them local.
_GYM_MAKE_OPTIONS = ("max_episode_steps", "autoreset", "apply_api_compatibility", "disable_env_checker", "render_mode")


@dataclass(frozen=True)
class SuiteEntry:
    env_id: str
    aliases: tuple[str, ...]
    summary: str
    offline_kwargs: dict[str, Any] | None  # make-kwargs that run on shipped data (demo, tests); None: no offline mode


class UnknownArgumentError(TypeError):
    """An env was given a keyword argument it does not take (e.g. a typo in ``--env-kwargs``)."""


_SUITE: dict[str, SuiteEntry] = {}
_ALIASES: dict[str, str] = {}


def register_env(env_id: str, entry_point: str, *, aliases: Iterable[str] = (), summary: str = "",
                 kwargs: dict[str, Any] | None = None, offline_kwargs: dict[str, Any] | None = None,
                 **spec_kwargs: Any) -> None:
    """Register ``env_id`` with Gymnasium (idempotent for the same entry point) and its aliases.

    ``offline_kwargs`` are the ``gym.make`` kwargs that run the env on data the project ships (for
    the demo and the conformance tests); ``{}`` when the defaults already need no download.
    """
    existing = gym.registry.get(env_id)
    if existing is not None and _same_code(existing.entry_point) != _same_code(entry_point):
        raise ValueError(f"{env_id} is already registered with entry point {existing.entry_point!r}")
    if existing is None:
        gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs or {}, **spec_kwargs)
    aliases = tuple(a.lower() for a in aliases)
    for alias in aliases:
        owner = _ALIASES.get(alias)
        if owner is not None and owner != env_id:
            raise ValueError(f"alias {alias!r} already names {owner}")
        _ALIASES[alias] = env_id
    _SUITE[env_id] = SuiteEntry(env_id, aliases, summary, offline_kwargs)


def _same_code(entry_point: Any) -> Any:
    """An entry point as the checkout names it: a process that imports both the checkout (``envs``) and
    the installed suite (``agentr1_gym.envs``, e.g. through a plugin) registers each id once."""
    return entry_point.removeprefix(f"{INSTALLED_PACKAGE}.") if isinstance(entry_point, str) else entry_point


def resolve_env_id(name: str) -> str:
    """Map an id, an alias (``math-v0``) or a bare name (``Math-v0``) to a registered id."""
    if name in gym.registry:
        return name
    key = name.lower()
    if key in _ALIASES:
        return _ALIASES[key]
    for env_id in gym.registry:
        if env_id.lower() in (key, f"{NAMESPACE}/{key}".lower()):
            return env_id
    known = ", ".join(sorted(_ALIASES)) or "none"
    raise gym.error.NameNotFound(f"no environment named {name!r}; aliases: {known}; `python -m envs list` shows all ids")


def env_server_urls(env_url: str | Sequence[str] | None = None) -> list[str]:
    """The env-server URLs to make envs on: ``env_url`` (a URL, a comma-separated list or a list),
    else ``$AGENTR1_ENV_URL``; ``[]`` (also for ``env_url=""``) means envs run in this process."""
    if env_url is None:
        env_url = os.environ.get(ENV_URL_VARIABLE, "")
    parts = env_url.split(",") if isinstance(env_url, str) else [str(u) for u in env_url]
    return [p.strip() for p in parts if p.strip()]


def make(name: str, *, env_url: str | Sequence[str] | None = None, **kwargs: Any) -> gym.Env:
    """``gym.make`` that also accepts aliases, and makes the env on env servers when URLs are given.

    With ``env_url`` (or ``$AGENTR1_ENV_URL``; ``""`` forces local) the env is
    ``AgentR1/Remote-v0`` on those servers, which must serve ``name`` with these kwargs (checked
    when it connects). Several URLs spread sessions and fail over (see ``envs.remote``).
    """
    env_id = resolve_env_id(name)
    urls = env_server_urls(env_url)
    if not urls or env_id == REMOTE_ENV_ID:
        return gym.make(env_id, **kwargs)
    options = {k: kwargs.pop(k) for k in _GYM_MAKE_OPTIONS if k in kwargs}
    return gym.make(REMOTE_ENV_ID, url=urls, env_id=env_id, env_kwargs=kwargs, **options)


def accepted_kwargs(cls: type, *, after: type | None = None) -> list[str]:
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the ``__init__`` chain.

    With ``after``, only those of the classes after ``after`` in the MRO (what ``after.__init__``
    forwards to ``super().__init__``). Names starting with ``_`` are private and left out.
    """
    mro = cls.__mro__
    names: list[str] = []
    for klass in mro[mro.index(after) + 1:] if after is not None else mro:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name != "self" and not p.name.startswith("_") and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def reject_unknown_kwargs(env: object, owner: type, kwargs: Mapping[str, object], *,
                          internal: Iterable[str] = ()) -> None:
    """Raise ``UnknownArgumentError`` (a ``TypeError``) naming every accepted argument if
    ``owner.__init__``'s ``**kwargs`` has unknown ones.

    Call it first in ``__init__`` (before any I/O): ``gym.make(id, typo=1)`` then fails at once with
    a message that lists the right names, instead of after loading a dataset. ``internal``: the
    base-class arguments ``owner`` always passes itself (a caller cannot give them).
    """
    if not kwargs:
        return
    internal = set(internal)
    unknown = sorted(set(kwargs) - (set(accepted_kwargs(type(env), after=owner)) - internal))
    if unknown:
        accepted = ", ".join(sorted(set(accepted_kwargs(type(env))) - internal))
        raise UnknownArgumentError(f"{type(env).__name__} got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"it accepts: {accepted}")


def suite_envs() -> list[SuiteEntry]:
    """The envs registered through ``register_env`` (the suite's and plugins'), sorted by id."""
    return [_SUITE[k] for k in sorted(_SUITE)]


def load_plugins() -> list[str]:
    """Load every ``agentr1_gym.envs`` entry point; a broken plugin is logged, never fatal."""
    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            target = ep.load()
            if callable(target):
                target()
            loaded.append(ep.name)
        except Exception:
            logger.warning("could not load environment plugin %s (%s)", ep.name, ep.value, exc_info=True)
    return loaded
