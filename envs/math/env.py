r"""``AgentR1/Math-v0`` and the evaluation ids: one math problem per episode, answer in ``\boxed{}``.

Single-turn by default (the Open-RS setting: one completion, scored once). With
``tools=("sympy",)`` (or ``"calculator"``, ``"python"``, or ``Tool`` objects) the model may call tools
over several turns before answering; a turn without a tool call is the final answer.

Rewards are named components (``envs.math.rewards``) chosen by ``reward_preset`` and re-weighted by
``reward_weights``. Whatever the weights, the final step's ``info["metrics"]`` reports ``acc`` (the
verifier's verdict alone, comparable with papers' pass@1), ``format``, ``length`` (tokens with a
tokenizer, else characters), ``cut_off``, the raw ``cosine`` / ``language`` values and the
verifier's details (``answer_found``, ``verify_fast_path``, ``verify_timeout``, ...); the full
verdict (method, extracted answer) is in ``info["verdict"]``. ``cut_off`` is 1.0 when the episode
ended unfinished (out of turns, or ``end_unfinished``), when the response stops inside its
reasoning block without a boxed answer (a generation cut by the token limit; see
``MathEnv.cut_off``), or when it reaches ``max_response_length``. (``truncated`` keeps
Gymnasium's meaning, as in every env: the episode was ended by a limit, not by an answer.)
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from envs.core.data import DataError, DataSource
from envs.core.env import Item, ItemListEnv
from envs.core.registry import reject_unknown_kwargs
from envs.core.rewards import RewardLedger
from envs.core.shared import SharedValues
from envs.core.tools import Tool
from envs.math.datasets import load_math_items, normalize_record, registered_name
from envs.math.rewards import (
    CosineConfig,
    DEFAULT_PRESET,
    FORMAT_MODES,
    LANGUAGE_SCRIPTS,
    cosine_reward,
    format_reward,
    get_preset,
    language_reward,
    preset_weights,
    response_length,
)
from envs.math.verify import ENV_ERROR, MathVerifier, Verdict, gold_content, open_rs_verifier
from envs.tools import PythonToolConfig, make_tool
from envs.tools.python_tool import usage_hint

logger = logging.getLogger(__name__)

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese", "fr": "French", "de": "German", "es": "Spanish", "ja": "Japanese",
                  "ko": "Korean", "ru": "Russian", "it": "Italian", "pt": "Portuguese", "ar": "Arabic"}
_INSTRUCTION = "Reason step by step, then give the final answer in \\boxed{}."
_TOOL_HINT = {
    "sympy": ('You can check algebra with the sympy tool: <tool_call>{"name": "sympy", "arguments": {"expression": '
              '"x^2 - 5*x + 6 = 0", "operation": "solve"}}</tool_call> (operations: evaluate, simplify, expand, factor, '
              "solve, diff, integrate). Its result comes back in the next message."),
    "calculator": ('You can use the calculator tool: <tool_call>{"name": "calculator", "arguments": {"expression": '
                   '"(12 + 7) * 3"}}</tool_call>.'),
}


class MathEnv(ItemListEnv):
    """Math problems with boxed answers, verified by ``MathVerifier``; Open-RS reward presets.

    Data: ``data_path`` (a name from ``envs.math.datasets``, ``"sample"``, a local file or a directory
    of files; ``dataset`` is its older name, which the registered ids use for their default, so
    ``data_path`` wins when both are given), ``split``, ``limit``, ``answer_format="gsm8k"`` for local
    GSM8K-style files, or ``items`` directly. Nothing is read at construction: the data loads on the
    first reset that needs it (an index or a random draw; never ``options={"item": ...}``), once per
    process for all instances with the same data arguments. ``validate=True`` loads it at once and
    checks that every gold verifies against itself (``DataError`` otherwise).
    Rewards: ``reward_preset`` (``envs.math.rewards.PRESETS``), ``reward_weights`` overrides per
    component, ``format_mode``, ``language`` (adds an instruction to the system prompt, after any
    ``system_prompt`` given, as Open-RS experiment 3 did; it is also the language the ``language``
    component measures), ``cosine`` (a ``CosineConfig`` or its fields as a dict),
    ``tokenizer`` (an object with ``encode``, or a Hugging Face name) to count lengths in tokens.
    Tools: ``tools=("sympy",)`` (also ``"calculator"``, ``"python"``: model-written code in a sandbox,
    configured by ``python={...}``, see ``envs.tools.python_tool``) and ``max_turns`` (default 4 with
    tools, else 1). Verification:
    ``verify_timeout`` (hard, seconds), ``require_boxed``, or a ready ``verifier``;
    ``eval_protocol="latex"`` or ``"expr"`` scores ``acc`` with the Open-RS evaluation protocol
    (lighteval's math metric, gold read as LaTeX or as an expression; the benchmark ids set it).
    ``acc`` is the verifier's verdict alone: the same response gets the same ``acc`` in every
    ``format_mode`` and under any reward weights.
    """

    # Open-RS's evaluation protocol (open-r1's evaluate.py on lighteval + vLLM: one sample, T 0.6,
    # top_p 0.95, 32,768 new tokens); a trainer concern, exposed for evaluation scripts. Training
    # completions are shorter (3,584 tokens in Open-RS experiments 2-3: see baselines/presets).
    recommended_sampling: ClassVar[dict[str, float | int]] = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32_768}

    def __init__(
        self,
        *,
        data_path: str | os.PathLike[str] | None = None,
        dataset: str | os.PathLike[str] = "open-rs",
        split: str | None = None,
        limit: int | None = None,
        answer_format: str | None = None,
        items: Sequence[Mapping[str, Any]] | None = None,
        reward_preset: str = DEFAULT_PRESET,
        reward_weights: Mapping[str, float] | None = None,
        format_mode: str | None = None,
        language: str | None = None,
        cosine: CosineConfig | Mapping[str, Any] | None = None,
        tokenizer: Any | None = None,
        tools: Sequence[str | Tool] = (),
        python: PythonToolConfig | Mapping[str, Any] | None = None,
        max_turns: int | None = None,
        verifier: MathVerifier | None = None,
        verify_timeout: float = 5.0,
        require_boxed: bool = False,
        eval_protocol: str | None = None,
        max_response_length: int | None = None,
        validate: bool = False,
        system_prompt: str | None = None,
        **kwargs: Any,
    ):
        reject_unknown_kwargs(self, MathEnv, kwargs, internal=("data",))
        preset = get_preset(reward_preset)
        self.preset = preset
        self.format_mode = format_mode or preset.format_mode
        if self.format_mode not in FORMAT_MODES:
            raise ValueError(f"format_mode must be one of {', '.join(FORMAT_MODES)}, got {self.format_mode!r}")
        self.language = language if language is not None else preset.language
        if self.language is not None and self.language.lower() not in LANGUAGE_SCRIPTS:
            raise ValueError(f"unknown language {self.language!r}; known: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
        if cosine is None:
            self.cosine = preset.cosine
        elif isinstance(cosine, CosineConfig):
            self.cosine = cosine
        else:
            self.cosine = CosineConfig(**dict(cosine))
        self._tokenizer = tokenizer  # a name is loaded on first use, once per process
        self.max_response_length = max_response_length
        # Per-instance weights: every component is declared so any can be turned on by reward_weights.
        self.default_reward_weights = preset_weights(preset)  # type: ignore[misc]
        if python is not None and "python" not in tools:
            raise ValueError("python= configures the python tool: add 'python' to tools")
        resolved_tools = [make_tool(t, timeout=verify_timeout, python=python) for t in tools]
        if resolved_tools:
            # Open-RS pays no process reward: a valid tool call earns nothing by itself (turn it on with
            # reward_weights={"tool_call_valid": ...}); malformed and failed calls still cost, unless the
            # preset says otherwise (ToRL charges nothing).
            self.default_reward_weights["tool_call_valid"] = 0.0
            self.default_reward_weights.update(preset.tool_weights)
        if verifier is None and eval_protocol is not None:
            verifier = open_rs_verifier(eval_protocol, timeout=verify_timeout, require_boxed=require_boxed)
        self.verifier = verifier or MathVerifier(timeout=verify_timeout, require_boxed=require_boxed)
        source = data_path if data_path is not None else dataset
        self.dataset_name = str(source)
        data = None
        if items is None:
            data = math_data_source(source, split=split, limit=limit, answer_format=answer_format)
        elif limit is not None:
            items = list(items)[:limit]
        if self.language:  # Open-RS experiment 3 put its English-only instruction in the system prompt
            instruction = language_instruction(self.language)
            system_prompt = f"{system_prompt.rstrip()}\n{instruction}" if system_prompt else instruction
        super().__init__(items, data=data, tools=resolved_tools, max_turns=max_turns or (4 if resolved_tools else 1),
                         reward_weights=reward_weights, system_prompt=system_prompt, **kwargs)
        if validate:
            report = self.verifier.validate(self.items)
            if not report.ok:
                raise DataError(f"{self.dataset_name}: some gold answers do not verify against themselves:\n{report.summary()}")

    @property
    def tokenizer(self) -> Any | None:
        """The tokenizer lengths are counted with (``None``: characters); a name loads on first use."""
        if isinstance(self._tokenizer, str):
            self._tokenizer = _load_tokenizer(self._tokenizer)
        return self._tokenizer

    # ------------------------------------------------------------------ data
    def prepare_item(self, item: Item, *, source: str, row: int | str | None) -> Item:
        return normalize_record(item, source=source, row=row)

    # ------------------------------------------------------------------ prompt
    def build_prompt(self, item: Item) -> str:
        lines = [item["problem"].strip(), "", _INSTRUCTION]
        for name, spec in self.tools.items():
            if name in _TOOL_HINT:
                lines.append(_TOOL_HINT[name])
            elif name == "python":
                lines.append(usage_hint(spec))
        return "\n".join(lines)

    # ------------------------------------------------------------------ scoring
    def score_final(self, item: Item, response: str, ledger: RewardLedger) -> dict[str, float]:
        # acc is the verifier's alone, whatever the format mode: a response cut inside an explicit
        # <think> block answers nothing (the verifier's rule), one without tags is read as written.
        verdict = self.verifier.verify(item["answer"], response)
        return self._score(verdict, response, ledger)

    def cut_off(self, response: str) -> bool:
        r"""Does ``response`` end inside its reasoning block with no ``\boxed{}`` answer?

        That is what a generation stopped by ``max_new_tokens`` looks like: a ``<think>`` without a
        later ``</think>``, or (in ``open-rs`` format mode, where R1 chat templates open the block in
        the prompt) no ``</think>`` at all.
        """
        if "\\boxed" in response or "\\fbox" in response:
            return False
        opened = response.rfind("<think>")
        if opened >= 0:
            return "</think>" not in response[opened:]
        return self.format_mode == "open-rs" and "</think>" not in response and bool(response.strip())

    def _score(self, verdict: Verdict, response: str, ledger: RewardLedger) -> dict[str, float]:
        state = self._state
        if state is not None:
            # Timing is left out: step info must be a function of (seed, actions).
            state.extra["verdict"] = {k: v for k, v in verdict.as_dict().items() if k != "seconds"}
            if verdict.method == ENV_ERROR:  # counted like an infrastructure tool fault: metric and step info
                state.env_errors += 1
        fmt = format_reward(response, self.format_mode)
        length = response_length(response, self.tokenizer)
        gold_ok = verdict.method != "unparsable_gold"
        # An infrastructure failure (``env_error``: no verdict) is neutral: the verdict-based
        # components are 0, never the wrong-answer value, and the metric lets trainers drop the episode.
        judged = gold_ok and verdict.method != ENV_ERROR
        cosine = cosine_reward(verdict.correct, length, self.cosine) if judged else 0.0
        language = language_reward(response, self.language or "en")
        values = {"accuracy": float(verdict.correct), "format": fmt, "cosine": cosine, "language": language}
        for name, value in values.items():
            if self.reward_weights.get(name, 0.0) != 0.0:
                ledger.add(name, value)
        cut_off = self.cut_off(response)
        if self.max_response_length is not None and length >= self.max_response_length:
            cut_off = True
        metrics = {"acc": float(verdict.correct), "format": fmt, "length": float(length),
                   "cut_off": float(cut_off), "cosine": cosine, "language": language}
        metrics.update(verdict.metrics())
        return metrics

    def outcome_margin(self) -> float:
        """Correct minus wrong under these weights: ``accuracy``, plus ``cosine``'s least value for a
        correct answer over its most for a wrong one, less what ``language`` could swing; ``format``
        is the same for both (a wrong answer with valid format is the comparison)."""
        w = self.reward_weights
        c = self.cosine
        cosine_gap = min(c.min_value_correct, c.max_value_correct) - max(c.min_value_wrong, c.max_value_wrong)
        return w.get("accuracy", 0.0) + w.get("cosine", 0.0) * cosine_gap - abs(w.get("language", 0.0))

    def score_unfinished(self, item: Item, ledger: RewardLedger) -> dict[str, float]:
        empty = Verdict(False, "no_answer")
        metrics = {"acc": 0.0, "format": 0.0, "length": 0.0, "cut_off": 1.0, "cosine": 0.0, "language": 0.0}
        metrics.update(empty.metrics())
        if self._state is not None:
            self._state.extra["verdict"] = {k: v for k, v in empty.as_dict().items() if k != "seconds"}
        return metrics

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = super().step(action)
        if terminated or truncated:
            self._attach_verdict(info)
        return observation, reward, terminated, truncated, info

    def end_unfinished(self, reason: str = "budget") -> tuple[float, dict[str, Any]]:
        reward, info = super().end_unfinished(reason)
        self._attach_verdict(info)
        return reward, info

    def _attach_verdict(self, info: dict[str, Any]) -> None:
        if self._state is not None and "verdict" in self._state.extra:
            info["verdict"] = dict(self._state.extra["verdict"])

    # ------------------------------------------------------------------ golden response
    def demonstration(self) -> list[str]:
        """An R1-style response that reasons briefly and boxes the gold answer (earns acc 1)."""
        answer = gold_content(self.item["answer"])
        reasoning = "I work through the problem step by step and check the result against the question."
        final = f"The final answer is $\\boxed{{{answer}}}$."
        if self.format_mode == "strict":
            return [f"<think>\n{reasoning}\n</think>\n<answer>\n{final}\n</answer>"]
        return [f"<think>\n{reasoning}\n</think>\n\n{final}"]


def math_data_source(source: str | os.PathLike[str], *, split: str | None = None, limit: int | None = None,
                     answer_format: str | None = None) -> DataSource:
    """The ``DataSource`` of a math env: ``load_math_items`` with these arguments, read on first need."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if answer_format not in (None, "gsm8k"):
        raise ValueError(f"unknown answer_format {answer_format!r} (use 'gsm8k' or leave it unset)")
    name = registered_name(source)
    files = () if name is not None else (os.fspath(source),)
    load = functools.partial(load_math_items, source, split=split, limit=limit, answer_format=answer_format)
    return DataSource(name=str(source), key=("math", name or os.fspath(source), split, limit, answer_format),
                      load=load, files=files)


def language_instruction(language: str) -> str:
    """The system-prompt sentence that asks for ``language`` (Open-RS experiment 3 asked for English)."""
    name = LANGUAGE_NAMES.get(language.lower(), language)
    return f"Think and answer in {name} only, not in any other language."


def _load_tokenizer(tokenizer: Any | None) -> Any | None:
    """A tokenizer object, or one loaded by name through ``transformers`` (imported only then), shared."""
    if tokenizer is None or not isinstance(tokenizer, str):
        return tokenizer

    def load() -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer)

    return _TOKENIZERS.get(tokenizer, load)


_TOKENIZERS: SharedValues[Any] = SharedValues()
