"""torchrun process-group setup and model wrapping with PyTorch's own FSDP2 / DDP.

Launch with ``torchrun --nproc-per-node N -m baselines.grpo ...`` (multi-node: ``--nnodes``,
``--rdzv-endpoint``). A plain ``python -m baselines.grpo`` is one process with no process group.
Each rank generates its own share of the prompts; the collectives here sum metrics and loss
normalisers, synchronise checkpoint writing, and gather weights for vLLM refreshes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: Any  # torch.device
    has_group: bool = False  # a process group exists (torchrun), even of size 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Collectives are available: several ranks, or one rank started by torchrun (FSDP2 on one GPU)."""
        return self.world_size > 1 or self.has_group


def init_distributed(device: str | None = None) -> DistContext:
    """Join the torchrun process group (NCCL on GPU, gloo on CPU); also at world size 1 under torchrun."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if device is None:
        device = f"cuda:{local_rank}" if use_cuda else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    launched = "TORCHELASTIC_RUN_ID" in os.environ  # set by torchrun, with MASTER_ADDR/PORT
    if (world_size > 1 or launched) and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev,
                       has_group=dist.is_initialized())


def resolve_strategy(strategy: str, ctx: DistContext, backend: str = "vllm") -> str:
    """``auto``: FSDP2 on GPUs, DDP on CPU, nothing on one process.

    HF ``generate`` samples with the training model itself; under FSDP2 every forward pass is a
    collective, so ranks whose rollouts stop after different numbers of tokens or turns would wait for
    each other forever. With the ``hf`` backend ``auto`` therefore picks DDP, and ``fsdp`` is refused.
    """
    if strategy == "fsdp" and backend == "hf" and ctx.world_size > 1:
        raise ValueError("strategy 'fsdp' cannot roll out with backend 'hf' on several ranks (generate on a sharded "
                         "model deadlocks when ranks stop at different lengths): use --strategy ddp or --backend vllm")
    if strategy != "auto":
        return strategy
    if not ctx.distributed:
        return "none"
    return "fsdp" if ctx.device.type == "cuda" and backend != "hf" else "ddp"


def wrap_model(model: Any, strategy: str, ctx: DistContext, *, compute_dtype: Any = None) -> Any:
    """Shard (FSDP2: each decoder layer, then the root) or replicate (DDP) the policy.

    Under FSDP2 ``compute_dtype`` (e.g. bf16) is the mixed-precision parameter dtype, with fp32
    gradient reduction and fp32 sharded master weights.
    """
    if strategy == "none" or not ctx.distributed:
        return model
    if strategy == "fsdp":
        import torch
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        kwargs: dict[str, Any] = {}
        if compute_dtype is not None and compute_dtype != torch.float32:
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
        layers = getattr(getattr(model, "model", None), "layers", None)
        for layer in layers or []:
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    raise ValueError(f"unknown strategy {strategy!r}")


def unwrap(model: Any) -> Any:
    """The underlying ``PreTrainedModel`` (DDP keeps it in ``.module``; FSDP2 shards in place)."""
    return getattr(model, "module", model)


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a list of floats over ranks (identity on one process)."""
    if not ctx.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def full_state_dict(model: Any, ctx: DistContext, *, cpu: bool = True) -> dict[str, Any]:
    """The unsharded model weights (on every rank when ``cpu=False``; rank 0 only when ``cpu=True``)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not ctx.distributed:
        return {k: v.detach().cpu() if cpu else v.detach() for k, v in unwrap(model).state_dict().items()}
    opts = StateDictOptions(full_state_dict=True, cpu_offload=cpu)
    return get_model_state_dict(unwrap(model), options=opts)


def iter_full_tensors(model: Any, dtype: Any = None) -> Iterator[tuple[str, Any]]:
    """Stream ``(name, full tensor)`` pairs of the model's weights, one parameter at a time.

    For a vLLM refresh: instead of materialising the whole unsharded fp32 state dict on every rank
    (``full_state_dict``), each FSDP2 shard is all-gathered on its own, cast to ``dtype`` (the
    rollout dtype), handed on, and freed before the next. Every rank must consume the iterator to
    the end in the same order (the gathers are collectives). Unsharded tensors are yielded as they
    are (no copy) when no cast is needed.
    """
    for name, tensor in unwrap(model).state_dict().items():
        full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
        full = full.detach()
        if dtype is not None and full.is_floating_point() and full.dtype != dtype:
            full = full.to(dtype)
        yield name, full
        del full


def optimizer_state(model: Any, optimizer: Any, ctx: DistContext) -> dict[str, Any]:
    """The optimizer state in an unsharded, rank-independent form (gathered on rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    if not ctx.distributed:
        return optimizer.state_dict()
    return get_optimizer_state_dict(unwrap(model), optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: Any, optimizer: Any, optim_sd: dict[str, Any], ctx: DistContext) -> None:
    """Load an optimizer state saved by ``optimizer_state`` into a possibly sharded model's optimizer."""
    if not ctx.distributed:
        optimizer.load_state_dict(optim_sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(unwrap(model), optimizer, optim_sd, options=StateDictOptions(full_state_dict=True))
