r"""Hardened answer checking for boxed math answers: math-verify in worker processes, plus a fast path.

``MathVerifier.verify(gold, response)`` decides whether ``response``'s final answer equals ``gold``:

1. **Extraction** (in the caller, pure Python): the content of the *last* ``\boxed{}`` is the answer;
   several boxes are never merged into a set (math-verify alone would read ``\boxed{3} ... \boxed{5}``
   as ``{3, 5}``). Without a box, the text after the reasoning is handed to math-verify's own
   extraction, unless ``require_boxed=True``. Answers longer than ``max_answer_chars`` are rejected.
2. **Fast path** (in the caller): identical normalised strings are equal; two plain exact numbers
   (integers with or without thousands separators, decimals, ``a/b``, ``\frac{a}{b}``, ``\dfrac``)
   are compared as fractions. Only verdicts math-verify would also reach are decided here; anything
   else goes on.
3. **Symbolic check** (in a worker process): math-verify's ``parse`` and ``verify(gold, answer)``
   (gold first, as its API intends) with a hard wall-clock timeout. The gold's parse is cached in the
   worker, so a problem's gold is parsed once per worker, not once per sampled response. Parsed
   SymPy objects never cross the process boundary; only the verdict does.

Every outcome is a :class:`Verdict` that says which method decided it (``exact``, ``numeric``,
``symbolic``, ``no_answer``, ``too_long``, ``unparsable_gold``, ``unparsable_answer``, ``timeout``,
``error``). A gold that math-verify cannot parse is flagged (``unparsable_gold``) and scores 0, not 1
(Open-RS's original reward gave 1.0). ``validate(items)`` checks that every gold verifies against
itself, so users can vet a dataset before training on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

from envs.core.parsing import extract_last_boxed, strip_reasoning
from envs.core.process_pool import ProcessPool, shared_pool

logger = logging.getLogger(__name__)

EXACT, NUMERIC, SYMBOLIC = "exact", "numeric", "symbolic"
NO_ANSWER, TOO_LONG, UNPARSABLE_GOLD, UNPARSABLE_ANSWER = "no_answer", "too_long", "unparsable_gold", "unparsable_answer"
TIMEOUT, ERROR = "timeout", "error"
FAST_METHODS = frozenset({EXACT, NUMERIC})

POOL_NAME = "agentr1-math"
_PRELOAD = ("envs.math.verify",)
_MAX_BOXES_SCANNED = 32  # bounds extraction work on adversarial text with thousands of unclosed boxes
_TAIL_CHARS = 2_000  # without a box, math-verify reads at most this much of the final text


@dataclass(frozen=True)
class Verdict:
    """The verifier's decision and how it was reached."""

    correct: bool
    method: str
    answer: str | None = None  # the extracted answer text that was checked
    source: str = "none"  # "boxed", "text" (no box: math-verify's own extraction) or "none"
    detail: str = ""
    seconds: float = 0.0

    @property
    def answered(self) -> bool:
        return self.source != "none"

    def metrics(self) -> dict[str, float]:
        """Deterministic float metrics for ``info["metrics"]`` (timing is left out on purpose)."""
        return {
            "answer_found": float(self.answered),
            "verify_fast_path": float(self.method in FAST_METHODS),
            "verify_symbolic": float(self.method == SYMBOLIC),
            "verify_timeout": float(self.method == TIMEOUT),
            "verify_error": float(self.method in (ERROR, UNPARSABLE_ANSWER, TOO_LONG)),
            "gold_unparsable": float(self.method == UNPARSABLE_GOLD),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationReport:
    """Result of ``MathVerifier.validate``: which golds do not verify against themselves."""

    total: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        head = f"{self.total - len(self.failures)}/{self.total} gold answers verify against themselves"
        lines = [head] + [f"  row {f['row']}: {f['answer']!r} ({f['method']}{': ' + f['detail'] if f['detail'] else ''})"
                          for f in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more")
        return "\n".join(lines)


class MathVerifier:
    """Answer equivalence for boxed math answers (see the module docstring for the pipeline).

    Thread-safe and cheap to create: instances share one process pool per process (``POOL_NAME``)
    unless ``pool`` is given. ``timeout`` is the hard wall-clock limit of one symbolic check.
    """

    def __init__(self, *, timeout: float = 5.0, max_answer_chars: int = 1_000, max_gold_chars: int = 2_000,
                 float_rounding: int = 6, strict: bool = True, require_boxed: bool = False, fast_path: bool = True,
                 pool: ProcessPool | None = None, workers: int | None = None):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.timeout = float(timeout)
        self.max_answer_chars = int(max_answer_chars)
        self.max_gold_chars = int(max_gold_chars)
        self.float_rounding = int(float_rounding)
        self.strict = bool(strict)
        self.require_boxed = bool(require_boxed)
        self.fast_path = bool(fast_path)
        self._pool = pool
        self._workers = workers
        self._bad_golds: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def pool(self) -> ProcessPool:
        if self._pool is None or self._pool.closed:
            self._pool = shared_pool(POOL_NAME, workers=self._workers, timeout=self.timeout, preload=_PRELOAD)
        return self._pool

    # ------------------------------------------------------------------ extraction
    def extract_answer(self, response: str) -> tuple[str | None, str]:
        r"""``(answer, source)``: the last ``\boxed{}`` content (``"boxed"``), else the final text for
        math-verify's own extraction (``"text"``), else ``(None, "none")``."""
        if not isinstance(response, str):
            return None, "none"
        boxed = extract_last_boxed(_bounded_for_boxes(response))
        if boxed is not None:
            return boxed, "boxed"
        if self.require_boxed:
            return None, "none"
        tail = strip_reasoning(response).strip()[-_TAIL_CHARS:]
        return (tail, "text") if tail else (None, "none")

    # ------------------------------------------------------------------ verification
    def verify(self, gold: Any, response: str) -> Verdict:
        """Is ``response``'s final answer equal to ``gold``? Never raises, never hangs."""
        started = time.perf_counter()
        pre = self._prepare(gold, response)
        if isinstance(pre, Verdict):
            return _timed(pre, started)
        outcome = self.pool.call(_symbolic_check, *pre.task, timeout=self.timeout)
        return _timed(self._from_outcome(pre, outcome), started)

    def verify_batch(self, pairs: Iterable[tuple[Any, str]]) -> list[Verdict]:
        """``verify`` for many ``(gold, response)`` pairs; symbolic checks run on all workers at once."""
        started = time.perf_counter()
        prepared = [self._prepare(gold, response) for gold, response in pairs]
        todo = [i for i, p in enumerate(prepared) if not isinstance(p, Verdict)]
        out: list[Verdict | None] = [p if isinstance(p, Verdict) else None for p in prepared]
        if todo:
            outcomes = self.pool.map(_symbolic_check, [prepared[i].task for i in todo], timeout=self.timeout)  # type: ignore[union-attr]
            for i, outcome in zip(todo, outcomes, strict=True):
                out[i] = self._from_outcome(prepared[i], outcome)  # type: ignore[arg-type]
        per_item = (time.perf_counter() - started) / max(1, len(out))
        return [replace(v, seconds=per_item) for v in out]  # type: ignore[arg-type]

    async def averify(self, gold: Any, response: str) -> Verdict:
        """``verify`` for asyncio code: the symbolic check waits on a helper thread, not the loop."""
        started = time.perf_counter()
        pre = self._prepare(gold, response)
        if isinstance(pre, Verdict):
            return _timed(pre, started)
        outcome = await self.pool.acall(_symbolic_check, *pre.task, timeout=self.timeout)
        return _timed(self._from_outcome(pre, outcome), started)

    async def averify_batch(self, pairs: Iterable[tuple[Any, str]]) -> list[Verdict]:
        """``verify_batch`` for asyncio code."""
        pairs = list(pairs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.verify_batch, pairs)

    def validate(self, items: Iterable[Mapping[str, Any] | Any], *, answer_key: str = "answer") -> ValidationReport:
        r"""Check that every item's gold verifies against ``\boxed{gold}`` through math-verify itself
        (the fast path is skipped: it would trivially agree). Items may be mappings or bare answers."""
        golds = [it.get(answer_key) if isinstance(it, Mapping) else it for it in items]
        probe = MathVerifier(timeout=self.timeout, max_answer_chars=max(self.max_answer_chars, self.max_gold_chars),
                             max_gold_chars=self.max_gold_chars, float_rounding=self.float_rounding,
                             strict=self.strict, fast_path=False, pool=self.pool)
        verdicts = probe.verify_batch([(g, f"\\boxed{{{gold_content(g)}}}") for g in golds])
        report = ValidationReport(total=len(golds))
        for row, (gold, verdict) in enumerate(zip(golds, verdicts, strict=True)):
            if not verdict.correct:
                report.failures.append({"row": row, "answer": gold, "method": verdict.method, "detail": verdict.detail})
        return report

    # ------------------------------------------------------------------ internals
    def _prepare(self, gold: Any, response: str) -> Verdict | _Pending:
        try:
            gold_text = gold_content(gold)
        except Exception as exc:  # a gold we cannot even turn into text
            return Verdict(False, UNPARSABLE_GOLD, detail=f"{type(exc).__name__}: {exc}")
        answer, source = self.extract_answer(response)
        if answer is None:
            return Verdict(False, NO_ANSWER)
        if source == "boxed" and len(answer) > self.max_answer_chars:
            return Verdict(False, TOO_LONG, answer[:80] + "...", source, f"answer longer than {self.max_answer_chars} characters")
        if not gold_text or len(gold_text) > self.max_gold_chars:
            return Verdict(False, UNPARSABLE_GOLD, answer, source, "gold answer is empty or too long")
        if self.fast_path and source == "boxed":
            decided = fast_compare(gold_text, answer)
            if decided is not None:
                correct, method = decided
                return Verdict(correct, method, answer, source)
        with self._lock:
            bad = self._bad_golds.get(gold_text)
        if bad is not None:
            return Verdict(False, UNPARSABLE_GOLD, answer, source, bad)
        task = (gold_text, answer, source == "boxed", self.float_rounding, self.strict)
        return _Pending(gold_text, answer, source, task)

    def _from_outcome(self, pre: _Pending, outcome: Any) -> Verdict:
        if outcome.status == "ok":
            correct, method = outcome.value
            if method == UNPARSABLE_GOLD:
                with self._lock:
                    self._bad_golds[pre.gold] = "math-verify could not parse the gold answer"
                    while len(self._bad_golds) > 4096:
                        self._bad_golds.popitem(last=False)
                return Verdict(False, UNPARSABLE_GOLD, pre.answer, pre.source, "math-verify could not parse the gold answer")
            return Verdict(bool(correct), method, pre.answer, pre.source)
        if outcome.status == "timeout":
            return Verdict(False, TIMEOUT, pre.answer, pre.source, outcome.error)
        logger.debug("verification failed: %s", outcome.error)
        return Verdict(False, ERROR, pre.answer, pre.source, outcome.error)


@dataclass(frozen=True)
class _Pending:
    gold: str
    answer: str
    source: str
    task: tuple


def _timed(verdict: Verdict, started: float) -> Verdict:
    return replace(verdict, seconds=max(0.0, time.perf_counter() - started))


def _bounded_for_boxes(text: str) -> str:
    r"""Drop all but the last ``_MAX_BOXES_SCANNED`` box commands' region, so finding the last
    balanced ``\boxed{}`` stays linear-ish on text with thousands of unclosed boxes."""
    count = text.count("\\boxed") + text.count("\\fbox")
    if count <= _MAX_BOXES_SCANNED:
        return text
    positions = sorted(m.start() for m in re.finditer(r"\\boxed|\\fbox", text))
    return text[positions[-_MAX_BOXES_SCANNED]:]


# ---------------------------------------------------------------------------- gold answers
def gold_content(gold: Any) -> str:
    r"""The gold answer as the text inside its box: ``"\boxed{5}"``, ``"$5$"`` and ``5`` all give ``"5"``."""
    if isinstance(gold, bool) or gold is None:
        raise ValueError(f"not a usable gold answer: {gold!r}")
    if isinstance(gold, (list, tuple)):
        if len(gold) != 1:
            raise ValueError(f"a gold answer list must have one element, got {len(gold)}")
        gold = gold[0]
    text = str(gold).strip()
    if "\\boxed" in text or "\\fbox" in text:
        boxed = extract_last_boxed(text)
        if boxed is not None:
            text = boxed
    if len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text.strip("$").strip()
    return text


# ---------------------------------------------------------------------------- fast path
_SPACING = re.compile(r"\\[!,;:> ]|\\(?:q?quad|displaystyle|left|right|mathrm\{\s*\})|~|\$")
_FRAC_CMD = re.compile(r"\\[dt]frac")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?")
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|textnormal|operatorname)\{([^{}]*)\}$")
_INT = r"-?(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)"
_NUMBER = re.compile(rf"^{_INT}$|^-?\d*\.\d+$|^-?\d+\.$")
_SLASH = re.compile(rf"^({_INT})/(\d+)$")
_LATEX_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(\d+)\}$")


def normalize_answer(text: str) -> str:
    """A light, meaning-preserving normal form for string comparison (spacing, ``\\dfrac``, degrees)."""
    text = _SPACING.sub("", text)
    text = _FRAC_CMD.sub(r"\\frac", text)
    text = _DEGREES.sub("", text)
    text = re.sub(r"\s+", "", text).rstrip(".")
    match = _TEXT_WRAP.match(text)
    return match.group(1).strip() if match else text


@functools.lru_cache(maxsize=65_536)
def _normal_and_number(text: str) -> tuple[str, tuple[Fraction, bool] | None, bool]:
    norm = normalize_answer(text)
    percent = norm.endswith("\\%") or norm.endswith("%")
    bare = norm[:-2] if norm.endswith("\\%") else norm[:-1] if norm.endswith("%") else norm
    return norm, exact_number(bare), percent


def exact_number(text: str) -> tuple[Fraction, bool] | None:
    r"""``(value, is_decimal)`` for a plain number (``-1,234``, ``0.5``, ``3/4``, ``\frac{3}{4}``), else ``None``."""
    if not text or len(text) > 64:
        return None
    try:
        if _NUMBER.match(text):
            return Fraction(text.replace("{,}", "").replace(",", "")), "." in text
        match = _SLASH.match(text)
        if match:
            num = int(match.group(1).replace("{,}", "").replace(",", ""))
            den = int(match.group(2))
            return (Fraction(num, den), False) if den else None
        match = _LATEX_FRAC.match(text)
        if match:
            den = int(match.group(3))
            if not den:
                return None
            value = Fraction(int(match.group(2)), den)
            return (-value if match.group(1) else value), False
    except (ValueError, ZeroDivisionError):
        return None
    return None


def fast_compare(gold: str, answer: str) -> tuple[bool, str] | None:
    """``(correct, method)`` when a cheap check settles it the way math-verify would, else ``None``.

    Equal normal forms are equal. Two exact numbers (no decimal point) are equal iff their values
    are. A decimal that equals the gold's value is equal; a decimal that differs is left to
    math-verify, which rounds (``1/3`` vs ``0.333333``). Percent signs are compared the same way
    math-verify does (``50\\%`` equals ``50``) only when the values match.
    """
    gold_norm, gold_num, gold_pct = _normal_and_number(gold)
    ans_norm, ans_num, ans_pct = _normal_and_number(answer)
    if gold_norm and gold_norm == ans_norm:
        return True, EXACT
    if gold_num is None or ans_num is None:
        return None
    (g, g_dec), (a, a_dec) = gold_num, ans_num
    if g == a:
        return True, NUMERIC
    if gold_pct != ans_pct or g_dec or a_dec:
        return None
    return False, NUMERIC


# ---------------------------------------------------------------------------- worker side
_GOLD_CACHE: OrderedDict[str, list] = OrderedDict()
_GOLD_CACHE_SIZE = 8_192
_READY = False


def _setup_math_verify() -> None:
    global _READY
    if _READY:
        return
    import math_verify.grader as grader
    import math_verify.parser as parser

    # Timeouts are enforced by the process pool; math-verify's SIGALRM would also reset our timer.
    grader.TIMEOUT_WARNING_SHOWN = True
    parser.TIMEOUT_WARNING_SHOWN = True
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _READY = True


def _parse(text: str) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(text, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=None)


def _symbolic_check(gold: str, answer: str, boxed: bool, float_rounding: int, strict: bool) -> tuple[bool, str]:
    """Runs in a worker: math-verify's parse and ``verify(gold, answer)``; the gold parse is cached."""
    _setup_math_verify()
    from math_verify import verify

    parsed_gold = _GOLD_CACHE.get(gold)
    if parsed_gold is None:
        parsed_gold = _parse(f"\\boxed{{{gold}}}")
        if not parsed_gold:  # e.g. plain text without a box wrapper parse
            parsed_gold = _parse(gold)
        _GOLD_CACHE[gold] = parsed_gold
        if len(_GOLD_CACHE) > _GOLD_CACHE_SIZE:
            _GOLD_CACHE.popitem(last=False)
    else:
        _GOLD_CACHE.move_to_end(gold)
    if not parsed_gold:
        return False, UNPARSABLE_GOLD
    parsed_answer = _parse(f"\\boxed{{{answer}}}" if boxed else answer)
    if not parsed_answer:
        return False, UNPARSABLE_ANSWER
    return bool(verify(parsed_gold, parsed_answer, float_rounding=float_rounding, strict=strict,
                       timeout_seconds=None)), SYMBOLIC


def default_verifier() -> MathVerifier:
    """A process-wide ``MathVerifier`` with default settings."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = MathVerifier()
        return _DEFAULT


_DEFAULT: MathVerifier | None = None
_DEFAULT_LOCK = threading.Lock()


def verify_many(golds: Sequence[Any], responses: Sequence[str], **kwargs: Any) -> list[Verdict]:
    """Convenience: ``MathVerifier(**kwargs).verify_batch(zip(golds, responses))``."""
    return MathVerifier(**kwargs).verify_batch(zip(golds, responses, strict=True))
