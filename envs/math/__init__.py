"""Math reasoning environments: boxed answers verified with math-verify, Open-RS rewards.

Registers ``AgentR1/Math-v0`` (training; default data ``open-rs`` from the Hub) and the evaluation
ids of the benchmarks the Open-RS paper reports. Every id runs offline on the shipped samples with
its ``offline_kwargs``. Importing this package is light: the env, sympy and math-verify load only
when an env is made.
"""

from envs.core.registry import register_env

_ENTRY = "envs.math.env:MathEnv"

register_env("AgentR1/Math-v0", _ENTRY, aliases=["math-v0", "math"], kwargs={"dataset": "open-rs"},
             offline_kwargs={"dataset": "sample"},
             summary="math problems with \\boxed{} answers (default data: open-rs), math-verify, Open-RS rewards")

# (id name, dataset name, aliases, summary, offline dataset)
_EVALUATION = (
    ("MATH500", "math500", ["math500-v0", "math-500-v0"], "MATH-500 (500 problems)", "sample"),
    ("AIME24", "aime24", ["aime24-v0"], "AIME 2024 (30 problems)", "sample"),
    ("AMC23", "amc23", ["amc23-v0"], "AMC 2023 (40 problems)", "sample"),
    ("Minerva", "minerva", ["minerva-v0"], "Minerva math (272 problems)", "sample"),
    ("OlympiadBench", "olympiadbench", ["olympiadbench-v0"], "OlympiadBench (675 problems)", "sample"),
    ("GSM8K", "gsm8k", ["gsm8k-v0"], "GSM8K test (answers after ####)", "gsm8k-sample"),
)

# How lighteval reads each benchmark's gold in the Open-RS evaluation (acc follows that protocol).
EVAL_PROTOCOLS = {"MATH500": "latex", "AIME24": "expr", "AMC23": "expr", "Minerva": "latex", "OlympiadBench": "latex"}

for _name, _dataset, _aliases, _summary, _offline in _EVALUATION:
    _protocol = {"eval_protocol": EVAL_PROTOCOLS[_name]} if _name in EVAL_PROTOCOLS else {}
    register_env(f"AgentR1/{_name}-v0", _ENTRY, aliases=_aliases, kwargs={"dataset": _dataset, **_protocol},
                 offline_kwargs={"dataset": _offline}, summary=f"evaluation: {_summary}")

MATH_ENV_IDS = ("AgentR1/Math-v0", *(f"AgentR1/{name}-v0" for name, *_ in _EVALUATION))
