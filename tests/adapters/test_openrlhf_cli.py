"""``python -m adapters.openrlhf``: files written, and the argument list checked by OpenRLHF itself.

How the check runs without GPUs: ``adapters.openrlhf.validate.check_args`` executes the real source
of ``openrlhf/cli/train_ppo_ray.py`` with ``runpy`` as ``__main__`` (the parser, the post-parse
asserts, then ``train(args)`` with its placement asserts), with Ray, the vLLM engine factory, the
actor groups, the DeepSpeed strategy and the trainer replaced by recorders; the fake trainer stops
the run where training would start. So a flag OpenRLHF does not know, an assert it makes, or a
layout ``train`` refuses fails these tests, while nothing is ever scheduled on a GPU. Not covered:
checks that happen later on the cluster (DeepSpeed's own config validation, vLLM start-up, model
loading) beyond the batch-divisibility rule the CLI applies itself.
"""

from __future__ import annotations

import json
import logging
import shlex

import pytest

pytest.importorskip("openrlhf")

from adapters.episodes import EpisodeSpec  # noqa: E402
from adapters.openrlhf.__main__ import build_parser, main, merge_flags, parse_overrides, sizing_flags  # noqa: E402
from adapters.openrlhf.presets import PRESETS, default_preset  # noqa: E402
from adapters.openrlhf.validate import OpenRLHFRejected, check_args  # noqa: E402


def _argv_from(out, capsys) -> list[str]:
    command = shlex.split(capsys.readouterr().out.strip().splitlines()[0])
    assert command == shlex.split((out / "command.txt").read_text())
    return command[command.index("openrlhf.cli.train_ppo_ray") + 1:]


def test_dry_run_writes_dataset_agent_and_command(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--env", "arithmetic-v0", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--num-prompts", "10",
                 "--output-dir", str(out), "--dry-run"]) == 0
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and {r["datasource"] for r in rows} == {"arithmetic-v0"}
    spec = EpisodeSpec.from_label(rows[0]["label"])
    assert spec.env_id == "AgentR1/Arithmetic-v0" and spec.item["answer"] and spec.seed == 42
    assert rows[0]["prompt"][-1]["role"] == "user"
    assert len({r["label"] for r in rows}) == 10  # distinct items
    argv = _argv_from(out, capsys)
    assert argv[argv.index("--train.agent_func_path") + 1] == str(out / "agent.py")
    assert "--data.apply_chat_template" in argv
    assert "class AgentExecutor(AgentR1Executor)" in (out / "agent.py").read_text()


def test_the_designs_command_runs_as_written(tmp_path, monkeypatch, capsys, caplog):
    """``python -m adapters.openrlhf --env math-v0 --offline --dry-run``: the Open-RS model, no other flag."""
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="adapters"):
        assert main(["--env", "math-v0", "--offline", "--dry-run"]) == 0
    argv = _argv_from(tmp_path / "runs" / "openrlhf" / "math-v0", capsys)
    assert argv[argv.index("--actor.model_name_or_path") + 1] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert "model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (the open-rs preset's default" in caplog.text
    check_args(argv)  # and OpenRLHF's own parser and launch checks accept it
    help_text = " ".join(build_parser().format_help().split())
    assert "open-rs: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" in help_text
    assert "agent-r1-qa: Qwen/Qwen2.5-1.5B-Instruct" in help_text


def test_a_named_model_is_resolved_to_its_local_directory(tmp_path, capsys, smollm2_dir):
    """``--model smollm2-135m``: the launch command names the converted HF directory, not the name."""
    out = tmp_path / "run"
    assert main(["--env", "arithmetic-v0", "--model", "smollm2-135m", "--num-prompts", "4", "--output-dir", str(out),
                 "--dry-run"]) == 0
    argv = _argv_from(out, capsys)
    assert argv[argv.index("--actor.model_name_or_path") + 1] == str(smollm2_dir)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("layout", [
    {"nodes": 1, "gpus_per_node": 1, "colocate": True, "vllm_tp": 1},
    {"nodes": 1, "gpus_per_node": 8, "colocate": True, "vllm_tp": 2},
    {"nodes": 2, "gpus_per_node": 8, "colocate": True, "vllm_tp": 1},
    {"nodes": 1, "gpus_per_node": 8, "colocate": False, "vllm_tp": 1},
], ids=["1gpu-colocated", "8gpu-tp2", "2x8-colocated", "8gpu-split"])
def test_presets_and_layouts_pass_openrlhf_checks(preset, layout):
    flags = {"--actor.model_name_or_path": "m", "--train.agent_func_path": "agent.py", "--data.prompt_dataset": "d.jsonl",
             "--data.input_key": "prompt", "--data.label_key": "label", "--data.apply_chat_template": True,
             **PRESETS[preset].flags, **sizing_flags(**layout)}
    if layout["nodes"] * layout["gpus_per_node"] == 16:  # the batch must split over 16 ranks
        flags["--train.batch_size"] = 16 * (PRESETS[preset].flags["--train.batch_size"] // 16 or 1)
    plan = check_args(merge_flags(flags, []))
    args = plan.args
    total = layout["nodes"] * layout["gpus_per_node"]
    assert plan.gpus_required() == total
    assert args.algo.advantage.estimator == "group_norm" and args.critic.model_name_or_path is None
    assert args.reward.remote_url == ["agent"]  # OpenRLHF's marker for agent mode
    assert plan.vllm_engines["agent_func_path"] == "agent.py"
    assert plan.vllm_engines["shared_pg"] == layout["colocate"]
    roles = {g["role"] for g in plan.actor_groups}
    kl = PRESETS[preset].flags["--algo.kl.init_coef"] > 0  # KL > 0 needs the reference model (ToRL has none)
    assert roles == {"PolicyModelActor"} | ({"ReferenceModelActor"} if kl else set())


def test_open_rs_preset_matches_the_paper():
    args = check_args(merge_flags({"--actor.model_name_or_path": "m", "--train.agent_func_path": "a.py",
                                   **PRESETS["open-rs"].flags, **sizing_flags(nodes=1, gpus_per_node=4, colocate=True,
                                                                               vllm_tp=1)}, [])).args
    assert args.rollout.n_samples_per_prompt == 6 and args.rollout.temperature == 0.7
    assert args.actor.adam.lr == 1e-6 and args.actor.lr_warmup_ratio == 0.1
    assert args.algo.kl.init_coef == 0.04 and args.algo.kl.estimator == "k3" and args.algo.kl.use_loss
    assert args.actor.eps_clip_low_high == (0.2, 0.2)
    assert args.rollout.batch_size == 12 and args.train.batch_size == 72  # 12 prompts x 6 samples per optimizer step
    assert args.data.max_len == 512 + 3584 and args.eval.temperature == 0.6
    # the per-turn completion cap (the agent enforces it); OpenRLHF cuts prompts to max_len - this = 512
    assert args.rollout.max_new_tokens == 3584
    assert args.actor.lr_scheduler == "cosine_with_min_lr" and args.actor.min_lr_ratio == 0.0
    assert default_preset("AgentR1/Math-v0").name == "open-rs"
    assert default_preset("AgentR1/AIME24-v0").name == "open-rs"  # an Open-RS evaluation set
    assert default_preset("AgentR1/HotpotQA-v0").name == "agent-r1-qa"
    assert default_preset("AgentR1/Arithmetic-v0").name == "small"


def test_user_overrides_win_and_reach_openrlhf(tmp_path, capsys):
    out = tmp_path / "run"
    main(["--env", "arithmetic", "--model", "m", "--num-prompts", "4", "--output-dir", str(out), "--gpus-per-node", "4",
          "--unset", "ds.packing_samples", "--dry-run", "--", "--actor.adam.lr", "5e-7", "--rollout.n_samples_per_prompt=4",
          "--logger.wandb.project", "agentr1"])
    argv = _argv_from(out, capsys)
    assert argv.count("--actor.adam.lr") == 1 and "--ds.packing_samples" not in argv
    args = check_args(argv).args
    assert args.actor.adam.lr == 5e-7 and args.rollout.n_samples_per_prompt == 4
    assert args.logger.wandb.project == "agentr1" and not args.ds.packing_samples


def test_openrlhf_rejects_flat_legacy_flags():
    with pytest.raises(OpenRLHFRejected, match="unrecognized arguments: --pretrain"):
        check_args(["--pretrain", "m", "--agent_func_path", "a.py"])


def test_openrlhf_rejects_a_colocated_layout_that_does_not_add_up():
    flags = {"--actor.model_name_or_path": "m", "--train.agent_func_path": "a.py", **PRESETS["small"].flags,
             **sizing_flags(nodes=1, gpus_per_node=8, colocate=True, vllm_tp=1)}
    with pytest.raises(OpenRLHFRejected, match="vllm_num_engines"):
        check_args(merge_flags(flags, ["--vllm.num_engines", "3"]))


def test_group_estimator_needs_several_samples():
    flags = {"--actor.model_name_or_path": "m", "--train.agent_func_path": "a.py", **PRESETS["small"].flags,
             **sizing_flags(nodes=1, gpus_per_node=1, colocate=True, vllm_tp=1)}
    with pytest.raises(OpenRLHFRejected, match="n_samples_per_prompt > 1"):
        check_args(merge_flags(flags, ["--rollout.n_samples_per_prompt", "1"]))


def test_cli_refuses_a_batch_deepspeed_cannot_split(tmp_path):
    with pytest.raises(SystemExit, match="multiple of"):
        main(["--env", "arithmetic", "--model", "m", "--num-prompts", "2", "--output-dir", str(tmp_path),
              "--gpus-per-node", "8", "--nodes", "2", "--preset", "open-rs", "--dry-run"])


def test_ray_submission_command(tmp_path, capsys):
    out = tmp_path / "run"
    main(["--env", "arithmetic", "--model", "m", "--num-prompts", "2", "--output-dir", str(out), "--gpus-per-node", "1",
          "--ray-address", "http://127.0.0.1:8265", "--working-dir", str(tmp_path), "--dry-run"])
    command = shlex.split(capsys.readouterr().out.strip().splitlines()[0])
    assert command[:5] == ["ray", "job", "submit", "--address", "http://127.0.0.1:8265"]
    assert command[command.index("--working-dir") + 1] == str(tmp_path)
    tail = command[command.index("--") + 1:]
    assert tail[:3] == ["python3", "-m", "openrlhf.cli.train_ppo_ray"]
    assert tail[tail.index("--data.prompt_dataset") + 1] == "run/train.jsonl"  # relative to the uploaded dir


def test_eval_split_of_a_generated_env_does_not_overlap_training(tmp_path, capsys):
    out = tmp_path / "run"
    main(["--env", "arithmetic", "--model", "m", "--num-prompts", "6", "--eval-num-prompts", "3", "--output-dir", str(out),
          "--gpus-per-node", "1", "--dry-run"])
    argv = _argv_from(out, capsys)
    assert argv[argv.index("--eval.dataset") + 1] == str(out / "eval.jsonl")
    train = {json.loads(line)["label"] for line in (out / "train.jsonl").read_text().splitlines()}
    evals = {json.loads(line)["label"] for line in (out / "eval.jsonl").read_text().splitlines()}
    assert len(evals) == 3 and not train & evals
    check_args(argv)


def test_parse_overrides_groups_values():
    assert parse_overrides(["--a", "1", "2", "--b", "--c=-3", "--d", "-1e-6"]) == [
        ("--a", ["1", "2"]), ("--b", []), ("--c", ["-3"]), ("--d", ["-1e-6"])]
    with pytest.raises(SystemExit):
        parse_overrides(["value-without-flag"])


def test_qa_trains_on_the_train_split_and_evaluates_on_validation(tmp_path, capsys):
    out = tmp_path / "run"
    main(["--env", "hotpotqa-v0", "--offline", "--model", "m", "--eval-num-prompts", "2", "--output-dir", str(out),
          "--gpus-per-node", "1", "--dry-run", "--drop-env-errors"])
    argv = _argv_from(out, capsys)
    train = EpisodeSpec.from_label(json.loads((out / "train.jsonl").read_text().splitlines()[0])["label"])
    evals = EpisodeSpec.from_label(json.loads((out / "eval.jsonl").read_text().splitlines()[0])["label"])
    assert train.make_kwargs["split"] == "train" and evals.make_kwargs["split"] == "validation"
    # dropping env-error episodes goes through OpenRLHF's dynamic filtering, with a range every real score passes
    assert "--algo.dynamic_filtering_enable" in argv
    low, high = (float(v) for v in argv[argv.index("--algo.dynamic_filtering_range") + 1:][:2])
    assert low < 0.0 and high > 1.0
    assert "drop_env_errors=True" in (out / "agent.py").read_text()



def test_a_split_named_in_env_kwargs_wins_over_the_qa_presets(tmp_path, capsys):
    out = tmp_path / "v"
    main(["--env", "hotpotqa-v0", "--offline", "--model", "m", "--num-prompts", "2", "--output-dir", str(out),
          "--env-kwargs", '{"split": "validation"}', "--dry-run"])
    assert "--rollout.n_samples_per_prompt" in _argv_from(out, capsys)
    specs = [EpisodeSpec.from_label(json.loads(line)["label"]) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(specs) == 2 and {s.make_kwargs["split"] for s in specs} == {"validation"}
    assert specs[0].make_kwargs["data_path"] == "sample"  # --offline: the shipped sample
