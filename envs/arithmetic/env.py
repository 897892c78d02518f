"""``AgentR1/Arithmetic-v0``: procedural arithmetic word problems with an optional calculator.

Each item is a short story of ``num_operations`` steps over ``digits``-digit numbers, generated from
the episode's ``np_random`` (or, for ``reset(options={"index": i})``, from ``(dataset_seed, i)`` so
item ``i`` is the same everywhere). The model answers with one number in ``\\boxed{}`` (boxes that
disagree are a hedge, scored as no answer); with ``calculator=True`` it may first call the calculator
over several turns, with ``python=True`` (or a mapping of the python tool's options,
``envs.tools.python_tool``) run code in a sandbox.

``split="train"`` / ``"test"`` draws only problems of that side of a fixed partition of *problems*
(the operands and operations, not the story around them), so learning can be measured on problems a
policy never trained on. A problem's side is a hash of its canonical form (``3 + 5`` and ``5 + 3`` are
one problem), independent of seeds and of ``dataset_seed``: every run, every seed and every process
agree, and the two sides never share a problem. ``test_fraction`` sets the share of problems held out.
Small spaces stay small: one-digit sums are 45 unordered problems, so a test split of 0.5 holds out
about 22 of them (about 40 ordered ones).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from envs.core.data import DataError, require_fields
from envs.core.env import Item, TextEnv
from envs.core.parsing import boxed_spans, extract_last_boxed, strip_reasoning
from envs.core.registry import reject_unknown_kwargs
from envs.core.rewards import RewardLedger
from envs.tools.calculator import calculator_tool
from envs.tools.python_tool import PythonToolConfig, python_tool, usage_hint

_NAMES = ("Ada", "Bilal", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kofi", "Lena")
_THINGS = ("apples", "stamps", "marbles", "coins", "books", "shells", "stickers", "cards")
_OPENINGS = ("{name} has {n} {things}.", "{name} starts the day with {n} {things}.", "A box holds {n} {things} for {name}.")
_STEPS = {
    "+": ("{name} gets {n} more.", "Then {name} finds another {n}.", "A friend gives {name} {n} more."),
    "-": ("{name} gives away {n}.", "Then {name} loses {n}.", "{name} sells {n} of them."),
    "*": ("Then the number of {things} is multiplied by {n}.", "{name} ends up with {n} times as many.",
          "The collection grows {n}-fold."),
}
_QUESTIONS = ("How many {things} does {name} have now?", "How many {things} are there at the end?")

_TOOL_HINT = (
    "You may use the calculator tool: write <tool_call>{\"name\": \"calculator\", \"arguments\": "
    "{\"expression\": \"...\"}}</tool_call> (or <calculator>...</calculator>) and wait for its result. "
    "When you know the answer, reply without a tool call."
)


class ArithmeticEnv(TextEnv):
    """Arithmetic word problems; reward = correct answer + format, plus tool process rewards."""

    default_reward_weights: ClassVar[dict[str, float]] = {"answer": 1.0, "format": 0.1}
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    default_system_prompt = "You are a careful assistant. Solve the problem step by step."

    def __init__(self, *, digits: int = 2, num_operations: int = 2, operations: str = "+-*",
                 calculator: bool = True, python: bool | PythonToolConfig | Mapping[str, Any] = False,
                 max_turns: int | None = None, style: str = "word", dataset_seed: int = 0, split: str | None = None,
                 test_fraction: float = 0.2, **kwargs: Any):
        reject_unknown_kwargs(self, ArithmeticEnv, kwargs)
        if not 1 <= digits <= 12:
            raise ValueError(f"digits must be in 1..12, got {digits}")
        if not 1 <= num_operations <= 10:
            raise ValueError(f"num_operations must be in 1..10, got {num_operations}")
        if not operations or set(operations) - set(_STEPS):
            raise ValueError(f"operations must be a non-empty subset of '+-*', got {operations!r}")
        if style not in ("word", "expression"):
            raise ValueError(f"style must be 'word' or 'expression', got {style!r}")
        if split not in (None, "train", "test"):
            raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        tools = [calculator_tool()] if calculator else []
        if python is not False:  # True: the defaults; a mapping or config: its limits and options
            tools.append(python_tool(None if python is True else python))
        super().__init__(tools=tools, max_turns=max_turns or (4 if tools else 1), **kwargs)
        self.digits, self.num_operations, self.operations = digits, num_operations, operations
        self.style, self.dataset_seed = style, dataset_seed
        self.split, self.test_fraction = split, test_fraction

    # -- data
    def _draw_item(self, options: Mapping[str, Any]) -> Item:
        if options.get("item") is not None:
            item = dict(options["item"])
            require_fields(item, ("question", "answer"), source="options['item']")
            if _as_number(str(item["answer"])) is None:
                raise DataError(f"options['item']: field 'answer' is not a number: {item['answer']!r}")
            return item
        if options.get("index") is not None:
            rng = np.random.default_rng([self.dataset_seed, int(options["index"])])
            return self.generate(rng)
        return self.generate(self.np_random)

    def generate(self, rng: np.random.Generator) -> Item:
        """One problem drawn from ``rng`` (of this env's ``split``, when it has one)."""
        for _ in range(_MAX_SPLIT_DRAWS):
            item = self._generate_any(rng)
            if self.split is None or problem_split(item["problem"], self.test_fraction) == self.split:
                return item
        raise RuntimeError(f"no {self.split} problem in {_MAX_SPLIT_DRAWS} draws: is test_fraction "
                           f"({self.test_fraction}) too close to 0 or 1 for this problem space?")

    def _generate_any(self, rng: np.random.Generator) -> Item:
        low, high = 10 ** (self.digits - 1) if self.digits > 1 else 1, 10 ** self.digits
        name = _NAMES[rng.integers(len(_NAMES))]
        things = _THINGS[rng.integers(len(_THINGS))]
        value = first = int(rng.integers(low, high))
        expression = str(value)
        steps: list[tuple[str, int]] = []
        sentences = [_pick(rng, _OPENINGS).format(name=name, n=value, things=things)]
        for _ in range(self.num_operations):
            op = self.operations[rng.integers(len(self.operations))]
            n = int(rng.integers(low, high)) if op != "*" else int(rng.integers(2, max(3, min(high, 10))))
            if op == "-" and n > value:  # keep counts non-negative
                op = "+" if "+" in self.operations else "*"
                n = n if op == "+" else int(rng.integers(2, 10))
            value = {"+": value + n, "-": value - n, "*": value * n}[op]
            expression = f"({expression} {op} {n})"
            steps.append((op, n))
            sentences.append(_pick(rng, _STEPS[op]).format(name=name, n=n, things=things))
        sentences.append(_pick(rng, _QUESTIONS).format(name=name, things=things))
        expression = expression[1:-1] if expression.startswith("(") else expression
        question = " ".join(sentences) if self.style == "word" else f"Compute {expression}."
        problem = canonical_problem(first, steps, expression)
        return {"question": question, "answer": str(value), "expression": expression, "problem": problem}

    # -- prompt and scoring
    def build_prompt(self, item: Item) -> str:
        lines = [item["question"], "Give the final answer as \\boxed{number}."]
        if "calculator" in self.tools:
            lines.append(_TOOL_HINT)
        if "python" in self.tools:
            lines.append(usage_hint(self.tools["python"]))
        return "\n".join(lines)

    def score_final(self, item: Item, response: str, ledger: RewardLedger) -> dict[str, float]:
        text = strip_reasoning(response)
        spans = boxed_spans(text)
        # a boxed *number*: copying the prompt's "\\boxed{number}" is not an answer, and paying format for it
        # is a trap a small model falls into (SmolLM2-135M's GRPO run settled on it within ten steps)
        numbers = {n for n in (_boxed_number(text[a:b]) for a, b in spans) if n is not None}
        # one answer: boxes that disagree are a hedge, as in the math envs' set comparison (a SmolLM2 run
        # learned to box every candidate, so that the last box was sometimes right)
        predicted = next(iter(numbers)) if len(numbers) == 1 else None
        correct = predicted is not None and predicted == _as_number(str(item["answer"]))
        well_formed = predicted is not None and "<tool_call>" not in response
        ledger.add("answer", float(correct))
        ledger.add("format", float(well_formed))
        return {"acc": float(correct), "format": float(well_formed), "answered": float(bool(spans))}

    def outcome_margin(self) -> float:
        """A correct answer earns ``answer`` more than a wrong one; both earn ``format``."""
        return self.reward_weights["answer"]

    def demonstration(self) -> list[str]:
        """Compute the expression with a tool (the python tool if there is one), then box the result."""
        item = self.item
        final = f"The answer is \\boxed{{{item['answer']}}}."
        if not self.tools or not item.get("expression"):
            return [final]
        python = self.tools.get("python")
        if python is not None and python.fence_argument:
            return [f"Let me compute it in Python.\n```python\nprint({item['expression']})\n```", final]
        if python is not None:
            code = json.dumps({"name": "python", "arguments": {"code": f"print({item['expression']})"}})
            return [f"Let me compute it in Python.\n<tool_call>{code}</tool_call>", final]
        call = '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>' % item["expression"]
        return [f"Let me compute {item['expression']}.\n{call}", final]


_MAX_SPLIT_DRAWS = 10_000


def canonical_problem(first: int, steps: list[tuple[str, int]], expression: str) -> str:
    """The problem without its story: its expression, a lone commutative step in sorted order (``3 + 5``)."""
    if len(steps) == 1 and steps[0][0] in "+*":
        a, b = sorted((first, steps[0][1]))
        return f"{a} {steps[0][0]} {b}"
    return expression


def problem_split(problem: str, test_fraction: float) -> str:
    """``"test"`` for a fixed ``test_fraction`` of problems (by a hash of ``problem``), else ``"train"``."""
    digest = hashlib.sha256(f"agentr1-arithmetic-split:{problem}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2 ** 64 < test_fraction else "train"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _boxed_number(content: str) -> Fraction | None:
    """The number in one outermost box's content; a box nested in it (``\\boxed{\\boxed{7}}``) is unwrapped."""
    inner = extract_last_boxed(content)
    return _as_number(inner if inner is not None else content)


def _as_number(text: str | None) -> Fraction | None:
    """Parse ``"1,234"``, ``"-3.50"``, ``"x = 7"``, ``"\\$12"`` or ``"3/4"`` as an exact number."""
    if text is None:
        return None
    cleaned = text.replace("\\!", "").replace(",", "").replace("\\$", "").replace("$", "").strip()
    cleaned = cleaned.split("=")[-1].strip().rstrip(".")
    cleaned = cleaned.replace("\\frac{", "").replace("}{", "/").replace("}", "") if cleaned.startswith("\\frac{") else cleaned
    # ``Fraction("1e999999999")`` computes 10**999999999 (minutes, gigabytes): the text is the model's,
    # so only plain decimals and fractions of bounded length are numbers here.
    if len(cleaned) > _MAX_NUMBER_CHARS or not _PLAIN_NUMBER.fullmatch(cleaned):
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


_MAX_NUMBER_CHARS = 100
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:\s*/\s*[+-]?\d+)?")
