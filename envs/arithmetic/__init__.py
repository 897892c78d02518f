"""Procedurally generated arithmetic word problems: the suite's hello-world and CPU training task."""

from envs.core.registry import register_env

register_env("AgentR1/Arithmetic-v0", "envs.arithmetic.env:ArithmeticEnv", aliases=["arithmetic-v0", "arithmetic"],
             summary="procedural arithmetic word problems, optional calculator tool, boxed answer",
             offline_kwargs={})
