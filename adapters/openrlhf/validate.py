"""Check an argument list with OpenRLHF's own parser and launch code, without GPUs or Ray.

``openrlhf.cli.train_ppo_ray`` builds its parser, validates the parsed flags and calls ``train(args)``
all under ``if __name__ == "__main__":``, and ``train`` itself asserts the cluster layout (e.g. a
colocated run needs as many actor GPUs as vLLM engines x tensor-parallel size) before it creates any
trainer. We run that file's real source with ``runpy`` as ``__main__``, with Ray, the vLLM engine
factory, the Ray actor groups, the DeepSpeed strategy and the trainer class replaced by recorders;
the fake trainer stops the run at the point where training would start. Everything OpenRLHF checks
on the way (argparse, the post-parse asserts, ``train``'s placement asserts) runs unmodified, and
the recorders report what the run would have asked of the cluster.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


class OpenRLHFRejected(ValueError):
    """OpenRLHF's parser or one of its checks refused the arguments."""


class _LaunchReached(Exception):
    pass


@dataclass
class LaunchPlan:
    """What ``train_ppo_ray`` would have created, up to the trainer."""

    args: Any = None  # OpenRLHF's hierarchised namespace
    messages: str = ""  # what OpenRLHF printed while checking (its warnings)
    placement_groups: list[int] = field(default_factory=list)  # bundle (GPU) counts of explicit placement groups
    vllm_engines: dict[str, Any] | None = None  # create_vllm_engines' arguments
    actor_groups: list[dict[str, Any]] = field(default_factory=list)  # RayActorGroup calls
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)

    def gpus_required(self) -> int:
        """GPUs the run reserves: colocated groups share their placement group's bundles."""
        if self.placement_groups:
            shared = self.placement_groups[0]
            separate = sum(g["num_nodes"] * g["num_gpus_per_node"] for g in self.actor_groups if not g["in_pg"])
            vllm = 0 if self.vllm_engines is None or self.vllm_engines["shared_pg"] else self._vllm_gpus()
            return shared + separate + vllm
        groups = sum(g["num_nodes"] * g["num_gpus_per_node"] for g in self.actor_groups)
        return groups + self._vllm_gpus()

    def _vllm_gpus(self) -> int:
        if not self.vllm_engines:
            return 0
        return int(self.vllm_engines["num_engines"]) * int(self.vllm_engines["tensor_parallel_size"])


def _fakes(plan: LaunchPlan) -> dict[str, types.ModuleType]:
    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    class PlacementGroup:
        def __init__(self, bundles: list[dict], strategy: str = "PACK"):
            self.bundles = bundles
            plan.placement_groups.append(sum(int(b.get("GPU", 0)) for b in bundles))

        def ready(self) -> None:
            return None

    def create_vllm_engines(num_engines: int, tensor_parallel_size: int, pretrain: str, seed: int, full_determinism: bool,
                            enable_prefix_caching: bool, enforce_eager: bool, max_model_len: int, shared_pg: Any = None,
                            gpu_memory_utilization: Any = None, vllm_enable_sleep: bool = False, logprobs_mode: Any = None,
                            **kwargs: Any) -> list:
        plan.vllm_engines = {"num_engines": num_engines, "tensor_parallel_size": tensor_parallel_size, "pretrain": pretrain,
                             "max_model_len": max_model_len, "shared_pg": shared_pg is not None,
                             "gpu_memory_utilization": gpu_memory_utilization, "enable_sleep": vllm_enable_sleep, **kwargs}
        return [object()] * int(num_engines)

    class RayActorGroup:
        def __init__(self, num_nodes: int, num_gpus_per_node: int, actor_cls: type, pg: Any = None,
                     num_gpus_per_actor: float = 1, duplicate_actors: int = 1, **kwargs: Any):
            plan.actor_groups.append({"role": actor_cls.__name__, "num_nodes": num_nodes, "num_gpus_per_node": num_gpus_per_node,
                                      "in_pg": pg is not None, "num_gpus_per_actor": num_gpus_per_actor})

    def _role(name: str) -> type:
        return type(name, (), {})

    class PPOTrainer:
        @staticmethod
        def remote(*args: Any, **kwargs: Any) -> None:
            plan.trainer_kwargs = kwargs
            raise _LaunchReached

    ray = module("ray", is_initialized=lambda: True, init=lambda *a, **k: None, get=lambda x, *a, **k: x)
    ray_util = module("ray.util")
    ray_pg = module("ray.util.placement_group", placement_group=PlacementGroup)
    ray.util = ray_util
    ray_util.placement_group = ray_pg
    return {
        "ray": ray,
        "ray.util": ray_util,
        "ray.util.placement_group": ray_pg,
        "openrlhf.trainer.ray": module("openrlhf.trainer.ray", create_vllm_engines=create_vllm_engines),
        "openrlhf.trainer.ray.launcher": module("openrlhf.trainer.ray.launcher", RayActorGroup=RayActorGroup,
                                                ReferenceModelActor=_role("ReferenceModelActor"),
                                                RewardModelActor=_role("RewardModelActor")),
        "openrlhf.trainer.ray.ppo_actor": module("openrlhf.trainer.ray.ppo_actor", PolicyModelActor=_role("PolicyModelActor")),
        "openrlhf.trainer.ray.ppo_critic": module("openrlhf.trainer.ray.ppo_critic", CriticModelActor=_role("CriticModelActor")),
        "openrlhf.trainer.ppo_trainer": module("openrlhf.trainer.ppo_trainer", PPOTrainer=PPOTrainer),
        "openrlhf.trainer.ppo_trainer_async": module("openrlhf.trainer.ppo_trainer_async", PPOTrainerAsync=PPOTrainer),
    }


@contextlib.contextmanager
def _patched_modules(replacements: dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in replacements}
    sys.modules.update(replacements)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def check_args(argv: Sequence[str]) -> LaunchPlan:
    """Run OpenRLHF 0.11.2's ``train_ppo_ray`` on ``argv`` up to the trainer; raise ``OpenRLHFRejected`` if refused."""
    import runpy

    spec = importlib.util.find_spec("openrlhf.cli.train_ppo_ray")
    if spec is None or spec.origin is None:
        raise ImportError("openrlhf is not installed (pip install --no-deps openrlhf==0.11.2 is enough for this check)")
    import openrlhf.utils as orlhf_utils

    plan = LaunchPlan()

    class Strategy:
        def __init__(self, args: Any):
            plan.args = args

        def print(self, *args: Any, **kwargs: Any) -> None:
            return None

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_strategy = sys.argv, orlhf_utils.get_strategy
    sys.argv = [spec.origin, *map(str, argv)]
    orlhf_utils.get_strategy = Strategy
    try:
        with _patched_modules(_fakes(plan)), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(spec.origin, run_name="__main__")
    except _LaunchReached:
        plan.messages = out.getvalue() + err.getvalue()
        return plan
    except SystemExit as exc:
        raise OpenRLHFRejected(f"OpenRLHF's argument parser exited with {exc.code}: {err.getvalue().strip()[-2000:]}") from None
    except AssertionError as exc:
        raise OpenRLHFRejected(f"OpenRLHF refused the arguments: {exc}") from None
    finally:
        sys.argv = saved_argv
        orlhf_utils.get_strategy = saved_strategy
    raise OpenRLHFRejected("train_ppo_ray finished without reaching the trainer (unexpected control flow)")
