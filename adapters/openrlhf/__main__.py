"""``python -m adapters.openrlhf``: train on any suite env with OpenRLHF 0.11.2 (Ray, vLLM, GRPO).

    python -m adapters.openrlhf --env math-v0 --gpus-per-node 4 --output-dir runs/open-rs \\
        -- --logger.wandb.key $WANDB_KEY

trains the preset's paper model unless ``--model`` names another (``open-rs``:
DeepSeek-R1-Distill-Qwen-1.5B; ``agent-r1-qa``: Qwen2.5-1.5B-Instruct), and
writes ``<output-dir>/train.jsonl`` (and ``eval.jsonl``), ``<output-dir>/agent.py`` and
``<output-dir>/command.txt``, then runs ``python -m openrlhf.cli.train_ppo_ray`` with the preset's
flags, the cluster sizing and your flags after ``--`` (which win). ``--dry-run`` stops after
printing the command; ``--check`` first runs OpenRLHF's own parser and launch checks on it locally;
``--ray-address`` submits to a running cluster with ``ray job submit``.

OpenRLHF sums each episode's per-step rewards into one trajectory reward (see
``adapters.openrlhf.agent``); the per-component sums are logged as ``env/reward/<component>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from adapters.episodes import (add_episode_arguments, evaluation_make_kwargs, policy_model, prompt_count,
                               resolve_make_kwargs, training_make_kwargs)
from adapters.openrlhf.dataset import INPUT_KEY, LABEL_KEY, prompt_rows, write_agent_file, write_jsonl
from adapters.openrlhf.presets import PRESETS, FlagValue, default_preset
from envs.core.cli import HelpFormatter, add_logging_argument, cli_entry, program_name, progress_enabled, setup_logging
from envs.core.io import atomic_write_text
from envs.core.layout import checkout_root, child_environment

logger = logging.getLogger("adapters.openrlhf")

DEFAULT_EVAL_PROMPTS = 256  # evaluation prompts written for an env that generates its items
# Scores are ``acc`` in [0, 1]; a group average is NaN only when an episode was marked for dropping
# (``AgentConfig.drop_env_errors``), and only such groups fall outside this open range.
DROP_FILTER_FLAGS: dict[str, FlagValue] = {"--algo.dynamic_filtering_enable": True,
                                           "--algo.dynamic_filtering_range": ["-1", "2"]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=program_name("adapters.openrlhf"), formatter_class=HelpFormatter,
                                description=__doc__.split("\n\n")[0],
                                epilog="Flags after `--` go to openrlhf.cli.train_ppo_ray unchanged and override the preset.")
    add_episode_arguments(p, "openrlhf", presets=PRESETS,
                          seed_help="base reset seed of the episodes and OpenRLHF's --train.seed")
    p.add_argument("--eval-env-kwargs", type=json.loads, help="JSON make-kwargs of an evaluation split (enables evaluation)")
    p.add_argument("--eval-num-prompts", type=int,
                   help=f"evaluation prompts (default: every item; {DEFAULT_EVAL_PROMPTS} for generated envs)")
    p.add_argument("--eval-steps", type=int, default=25, help="evaluate every N steps when an eval split is given")
    p.add_argument("--nodes", type=int, default=1, help="nodes in the Ray cluster")
    p.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node")
    p.add_argument("--colocate", action=argparse.BooleanOptionalAction, default=True,
                   help="colocate actor, reference and vLLM on every GPU with sleep mode (default); "
                        "--no-colocate splits each node between vLLM and training")
    p.add_argument("--vllm-tp", type=int, default=1, help="vLLM tensor-parallel size")
    p.add_argument("--vllm-gpus-per-node", type=int, help="--no-colocate: GPUs per node for vLLM (default half)")
    p.add_argument("--step-timeout", type=float, default=600.0, help="seconds one env step may take in the agent")
    p.add_argument("--drop-env-errors", action="store_true",
                   help="drop the group of any episode hit by an infrastructure fault (env_error), through OpenRLHF's "
                        "dynamic filtering with a range that keeps every other group")
    p.add_argument("--unset", action="append", default=[], metavar="FLAG", help="drop a preset flag, e.g. --unset ds.packing_samples")
    p.add_argument("--dry-run", action="store_true", help="write the files and print the command; do not launch")
    p.add_argument("--check", action="store_true", help="run OpenRLHF's own parser and launch checks on the command first")
    p.add_argument("--ray-address", help="submit with `ray job submit --address ...` instead of running locally")
    p.add_argument("--working-dir", type=Path, help="with --ray-address: upload this directory as the job's working dir")
    add_logging_argument(p)
    return p


def parse_overrides(tokens: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Group ``--flag v1 v2 --switch`` into ``[("--flag", ["v1", "v2"]), ("--switch", [])]``."""
    groups: list[tuple[str, list[str]]] = []
    for token in tokens:
        if token.startswith("--") and len(token) > 2 and not _is_number(token):
            if "=" in token:
                flag, value = token.split("=", 1)
                groups.append((flag, [value]))
            else:
                groups.append((token, []))
        elif groups:
            groups[-1][1].append(token)
        else:
            raise SystemExit(f"override {token!r} is not a --flag; flags after `--` look like --actor.adam.lr 5e-7")
    return groups


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def sizing_flags(*, nodes: int, gpus_per_node: int, colocate: bool, vllm_tp: int,
                 vllm_gpus_per_node: int | None = None) -> dict[str, FlagValue]:
    """Cluster layout flags that satisfy OpenRLHF's placement checks."""
    if nodes < 1 or gpus_per_node < 1 or vllm_tp < 1:
        raise SystemExit("--nodes, --gpus-per-node and --vllm-tp must be >= 1")
    if colocate:
        total = nodes * gpus_per_node
        if total % vllm_tp:
            raise SystemExit(f"colocated mode needs the {total} GPUs to split into vLLM engines of {vllm_tp} (--vllm-tp)")
        return {"--actor.num_nodes": nodes, "--actor.num_gpus_per_node": gpus_per_node, "--ref.num_nodes": nodes,
                "--ref.num_gpus_per_node": gpus_per_node, "--vllm.num_engines": total // vllm_tp,
                "--vllm.tensor_parallel_size": vllm_tp, "--vllm.gpu_memory_utilization": 0.6,
                "--train.colocate_all": True, "--vllm.enable_sleep": True, "--ds.enable_sleep": True}
    if gpus_per_node < 2:
        raise SystemExit("--no-colocate needs at least 2 GPUs per node (one for vLLM, one for training)")
    vllm_gpus = vllm_gpus_per_node if vllm_gpus_per_node is not None else gpus_per_node // 2
    train_gpus = gpus_per_node - vllm_gpus
    if not 1 <= vllm_gpus < gpus_per_node or (nodes * vllm_gpus) % vllm_tp:
        raise SystemExit(f"--vllm-gpus-per-node {vllm_gpus} must leave training GPUs and divide into engines of {vllm_tp}")
    return {"--actor.num_nodes": nodes, "--actor.num_gpus_per_node": train_gpus, "--ref.num_nodes": nodes,
            "--ref.num_gpus_per_node": train_gpus, "--train.colocate_actor_ref": True,
            "--vllm.num_engines": nodes * vllm_gpus // vllm_tp, "--vllm.tensor_parallel_size": vllm_tp,
            "--vllm.gpu_memory_utilization": 0.9}


def render_flags(flags: dict[str, FlagValue]) -> list[str]:
    argv: list[str] = []
    for flag, value in flags.items():
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def merge_flags(flags: dict[str, FlagValue], overrides: Sequence[str], unset: Sequence[str] = ()) -> list[str]:
    """Preset/wiring flags, minus ``unset``, with user ``overrides`` replacing flags they name."""
    drop = {u if u.startswith("--") else "--" + u for u in unset}
    groups = parse_overrides(overrides)
    named = {flag for flag, _ in groups}
    kept = {k: v for k, v in flags.items() if k not in drop and k not in named}
    argv = render_flags(kept)
    for flag, values in groups:
        argv += [flag, *values]
    return argv


def check_batch_layout(argv: Sequence[str]) -> None:
    """DeepSpeed needs the global train batch to split evenly over micro-batches and actor ranks."""
    values: dict[str, str] = {}
    for flag, vals in parse_overrides(argv):
        values[flag] = vals[0] if vals else "true"
    get = lambda flag, default: int(values.get(flag, default))  # noqa: E731
    ranks = (get("--actor.num_nodes", 1) * get("--actor.num_gpus_per_node", 8)
             // get("--ds.ring_attn_size", 1) // get("--ds.tensor_parallel_size", 1))
    batch, micro = get("--train.batch_size", 128), get("--train.micro_batch_size", 1)
    if "--train.dynamic_batch_enable" not in values and batch % (micro * ranks):
        raise SystemExit(f"--train.batch_size {batch} must be a multiple of --train.micro_batch_size {micro} x {ranks} "
                         "actor ranks; pass e.g. `-- --train.batch_size N` with a multiple")


def prepare(ns: argparse.Namespace, overrides: Sequence[str]) -> tuple[list[str], Path]:
    """Write the data and agent file; return OpenRLHF's argument list and the output folder."""
    import envs

    env_id = envs.resolve_env_id(ns.env)
    alias = next((e.aliases[0] for e in envs.suite_envs() if e.env_id == env_id and e.aliases), env_id.split("/")[-1].lower())
    out = (ns.output_dir or Path("runs") / "openrlhf" / alias).resolve()
    preset = PRESETS[ns.preset] if ns.preset else default_preset(env_id)
    model = policy_model(ns.model, preset.name)
    # the preset's data split (QA: train) unless --env-kwargs names one
    make_kwargs = training_make_kwargs(env_id, preset.name, ns.env_kwargs, offline=ns.offline)
    count = prompt_count(env_id, make_kwargs, ns.num_prompts)
    train_rows = prompt_rows(env_id, make_kwargs, count=count, seed=ns.seed, datasource=alias, progress=progress_enabled())
    train_path = write_jsonl(out / "train.jsonl", train_rows)
    logger.info("wrote %d prompts to %s", len(train_rows), train_path)
    env_pairs = [(env_id, make_kwargs)]

    eval_flags: dict[str, FlagValue] = {}
    if ns.eval_env_kwargs is not None or ns.eval_num_prompts is not None:
        # the evaluation split (QA: validation, the split the papers report) unless --eval-env-kwargs names one
        eval_kwargs = {**(evaluation_make_kwargs(env_id, preset.name, make_kwargs) or make_kwargs),
                       **(resolve_make_kwargs(env_id, ns.eval_env_kwargs, offline=ns.offline)
                          if ns.eval_env_kwargs is not None else {})}
        eval_count = prompt_count(env_id, eval_kwargs, ns.eval_num_prompts, procedural_default=DEFAULT_EVAL_PROMPTS)
        # a generated env's eval items come after the training items, so the two never overlap
        start = len(train_rows) if eval_kwargs == make_kwargs else 0
        eval_rows = prompt_rows(env_id, eval_kwargs, count=eval_count, seed=ns.seed, start=start, datasource=alias,
                                progress=progress_enabled())
        eval_path = write_jsonl(out / "eval.jsonl", eval_rows)
        logger.info("wrote %d evaluation prompts to %s", len(eval_rows), eval_path)
        eval_flags = {"--eval.dataset": str(eval_path), "--eval.steps": ns.eval_steps}
        env_pairs.append((env_id, eval_kwargs))

    agent_path = write_agent_file(out / "agent.py", env_pairs, step_timeout=ns.step_timeout,
                                  drop_env_errors=ns.drop_env_errors, env_url=ns.env_url)
    logger.info("preset %s: %s", preset.name, preset.summary)
    flags: dict[str, FlagValue] = {
        "--actor.model_name_or_path": model,
        "--train.agent_func_path": str(agent_path),
        "--data.prompt_dataset": str(train_path),
        "--data.input_key": INPUT_KEY,
        "--data.label_key": LABEL_KEY,
        "--data.apply_chat_template": True,
        "--train.seed": ns.seed,
        **preset.flags,
        **sizing_flags(nodes=ns.nodes, gpus_per_node=ns.gpus_per_node, colocate=ns.colocate, vllm_tp=ns.vllm_tp,
                       vllm_gpus_per_node=ns.vllm_gpus_per_node),
        **eval_flags,
        **(DROP_FILTER_FLAGS if ns.drop_env_errors else {}),
        "--ckpt.output_dir": str(out / "model"),
        "--ckpt.path": str(out / "checkpoints"),
        "--logger.tensorboard_dir": str(out / "tensorboard"),
    }
    argv = merge_flags(flags, overrides, ns.unset)
    check_batch_layout(argv)
    return argv, out


def launch_command(argv: Sequence[str], *, ray_address: str | None = None, working_dir: Path | None = None) -> list[str]:
    """The command that runs ``train_ppo_ray`` locally, or submits it to a Ray cluster."""
    train = ["python3" if ray_address else sys.executable, "-m", "openrlhf.cli.train_ppo_ray", *argv]
    if not ray_address:
        return train
    submit = ["ray", "job", "submit", "--address", ray_address]
    if working_dir is not None:
        submit += ["--working-dir", str(working_dir)]
    elif checkout_root() is not None:  # the nodes must see this checkout (shared filesystem)
        submit += ["--runtime-env-json", json.dumps({"env_vars": {"PYTHONPATH": str(checkout_root())}})]
    return [*submit, "--", *train]


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, overrides = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ns = build_parser().parse_args(own)
    setup_logging(ns.log_level)
    train_argv, out = prepare(ns, overrides)
    if ns.working_dir is not None:  # paths inside the uploaded directory must be relative to it
        wd = ns.working_dir.resolve()
        train_argv = [os.path.relpath(a, wd) if a.startswith(str(wd) + os.sep) else a for a in train_argv]
    command = launch_command(train_argv, ray_address=ns.ray_address, working_dir=ns.working_dir)
    atomic_write_text(out / "command.txt", shlex.join(command) + "\n")
    print(shlex.join(command))
    if ns.check:
        from adapters.openrlhf.validate import check_args

        plan = check_args(train_argv)
        print(f"# OpenRLHF accepted the arguments: {plan.gpus_required()} GPUs, "
              f"{plan.vllm_engines['num_engines'] if plan.vllm_engines else 0} vLLM engines")
    if ns.dry_run:
        return 0
    return subprocess.call(command, env=child_environment())


if __name__ == "__main__":
    raise SystemExit(main())
