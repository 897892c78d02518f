"""``python -m baselines.grpo``: train a policy with GRPO on any suite env.

Examples::

    # CPU demo: the tiny model on the easiest arithmetic problems (a few minutes)
    python -m baselines.grpo --config arithmetic_cpu

    # Open-RS experiment 2 (its preset's model: DeepSeek-R1-Distill-Qwen-1.5B) on one GPU, or 4 with torchrun
    python -m baselines.grpo --config open_rs
    torchrun --nproc-per-node 4 -m baselines.grpo --config open_rs

The preset is applied first, then every flag given on the command line. ``--set key=value``
(YAML-parsed value) reaches any config field; ``--env-kwargs '{"digits": 1}'`` merges into the
preset's env kwargs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from typing import Any

from baselines.grpo.config import GRPOConfig, make_config
from envs.core.cli import add_logging_argument, cli_entry, program_name, setup_logging

logger = logging.getLogger(__name__)


def _flag_type(tp: Any):
    if tp in (int, float, str):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and args[0] in (int, float, str):
        return args[0]
    return None


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=program_name("baselines.grpo"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML preset: a path or a name in baselines/presets (open_rs, agent_r1_hotpotqa, ...)")
    parser.add_argument("--env-kwargs", type=json.loads, help="JSON object merged into the env's make kwargs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config field (value parsed as YAML); repeatable")
    parser.add_argument("--device", help="torch device (default: cuda:<local_rank> if available, else cpu)")
    add_logging_argument(parser)
    hints = typing.get_type_hints(GRPOConfig)
    for f in dataclasses.fields(GRPOConfig):
        if f.name == "env_kwargs":
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        if f.name == "model":
            parser.add_argument(flag, help=f"HF id or directory of the policy (default: the --config preset's model, "
                                           f"else {f.default!r}: baselines.tiny's test model)")
        elif tp is bool:
            parser.add_argument(flag, type=_parse_bool, metavar="BOOL", help=f"(default {f.default})")
        elif _flag_type(tp) is not None:
            default = f.default if f.default is not dataclasses.MISSING else None
            parser.add_argument(flag, type=_flag_type(tp), help=f"(default {default})")
    return parser


def config_from_args(args: argparse.Namespace) -> GRPOConfig:
    import yaml

    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(GRPOConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name != "env_kwargs":
            overrides[f.name] = value
    for assignment in args.set:
        key, sep, raw = assignment.partition("=")
        if not sep:
            raise SystemExit(f"--set needs KEY=VALUE, got {assignment!r}")
        overrides[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    if args.env_kwargs is not None:
        if not isinstance(args.env_kwargs, dict):
            raise SystemExit("--env-kwargs must be a JSON object")
        overrides["env_kwargs"] = args.env_kwargs
    return make_config(args.config, **overrides)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = config_from_args(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = "--model" if args.model else f"the {args.config} preset" if args.config else "the default"
    logger.info("training %s on %s (model from %s)", cfg.model, cfg.env, source)
    from baselines.grpo.trainer import GRPOTrainer

    trainer = GRPOTrainer(cfg, device=args.device)
    try:
        history = trainer.train()
    finally:
        trainer.close()
    if trainer.ctx.is_main and not history:
        print(json.dumps({"step": trainer.start_step, "note": f"already trained to step {trainer.start_step}; "
                          "raise --steps or use a new --output-dir"}))
    if trainer.ctx.is_main and history:
        last = history[-1]
        keys = ("step", "reward", "acc", "format", "turns", "response_length", "kl", "entropy", "clip_frac")
        print(json.dumps({k: last[k] for k in keys if k in last}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
