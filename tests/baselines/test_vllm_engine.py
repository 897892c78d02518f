"""vLLM engine settings per platform (no vLLM needed): what the trainer asks the engine for on CPU and GPU."""

from __future__ import annotations

import pytest

from baselines.grpo.vllm_engine import VLLMSettings, cpu_thread_binding, engine_kwargs, logprob_gap


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_cpu_defaults_eager_kv_cache_and_no_sleep(clean_env, caplog):
    import os

    kwargs = engine_kwargs(VLLMSettings(enable_sleep=True, cpu_kvcache_gib=2.5), cpu=True, seed=3)
    assert kwargs["enforce_eager"] is True and kwargs["enable_sleep_mode"] is False
    assert "gpu_memory_utilization" not in kwargs  # on CPU it would be a share of host RAM
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "2.5"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ
    assert kwargs["dtype"] == "float32" and kwargs["seed"] == 3
    assert "no sleep mode on CPU" in caplog.text


def test_cpu_tensor_parallel_binds_disjoint_core_sets(clean_env):
    import os

    assert cpu_thread_binding(2, cores=[0, 1]) == "0|1"
    assert cpu_thread_binding(2, cores=[4, 5, 6, 7, 8]) == "4,5|6,7"
    with pytest.raises(ValueError):
        cpu_thread_binding(3, cores=[0, 1])
    engine_kwargs(VLLMSettings(tensor_parallel_size=2, cpu_threads_bind="0|1"), cpu=True, seed=0)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"


def test_user_settings_win_over_defaults(clean_env):
    import os

    clean_env.setenv("VLLM_CPU_KVCACHE_SPACE", "7")
    engine_kwargs(VLLMSettings(cpu_kvcache_gib=1.0), cpu=True, seed=0)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "7"


def test_gpu_keeps_graphs_sleep_and_memory_share(clean_env):
    import os

    kwargs = engine_kwargs(VLLMSettings(dtype="bfloat16", enable_sleep=True, gpu_memory_utilization=0.4), cpu=False,
                           seed=0, distributed=True)
    assert kwargs["enforce_eager"] is False and kwargs["enable_sleep_mode"] is True
    assert kwargs["gpu_memory_utilization"] == 0.4 and kwargs["dtype"] == "bfloat16"
    assert kwargs["distributed_executor_backend"] == "external_launcher"
    assert "VLLM_CPU_KVCACHE_SPACE" not in os.environ


def test_logprob_gap():
    assert logprob_gap([-1.0, -2.0], [-1.5, -2.0]) == {"mean_abs": 0.25, "max_abs": 0.5}
    assert logprob_gap([], []) == {"mean_abs": 0.0, "max_abs": 0.0}
    with pytest.raises(ValueError):
        logprob_gap([0.0], [])


def test_one_torchrun_rank_may_shard_with_hf_rollouts():
    torch = pytest.importorskip("torch")
    from baselines.grpo.distributed import DistContext, resolve_strategy

    one = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cuda", 0), has_group=True)
    assert one.distributed
    assert resolve_strategy("fsdp", one, "hf") == "fsdp"  # one rank cannot wait for another
    assert resolve_strategy("auto", one, "vllm") == "fsdp"
