r"""Math answer checking at least as good as math-verify: worker processes plus a fast path.

``MathVerifier.verify(gold, response)`` decides whether ``response``'s final answer equals ``gold``:

1. **Gold** (``envs.math.answers.parse_gold``): the content of its box or ``$...$``; several boxes or
   an unordered list (``1, -2``, ``\{1, -2\}``) make a *multi-part* gold, compared as a set.
2. **Final answer** (``envs.math.answers.final_answer``), by ``protocol``:

   * ``"agentr1"`` (training, the default): only the text after the last ``</think>`` (if any) is
     read. The answer is the *last* ``\boxed{}``, together with any boxes joined to it by ``and``,
     ``or`` or a comma (``\boxed{3} or \boxed{5}`` is the two-part answer ``{3, 5}``: a hedge earns
     nothing for gold 5); a box followed by more reasoning and another box is superseded. For a
     multi-part gold with ``k`` parts the last ``k`` boxes are also tried, as a set
     (``\boxed{-2} ... \boxed{1}`` for ``1, -2``). A ``final answer`` statement written *after* the
     last box wins over it (``\boxed{255} ... so the final answer is $10,455$`` answers 10455, as
     plain math-verify reads it): it is the response's last word. Without a box, the final text
     goes to math-verify's own LaTeX / expression extraction. A response that opens ``<think>`` and
     never closes it (and has no box) answered nothing: it was cut off mid-reasoning.
     ``require_boxed=True`` accepts boxes only.
   * ``"open-rs"`` (the benchmark ids; the Open-RS / open-r1 lighteval protocol): ``<think>...</think>``
     pairs are removed as lighteval does; a box wins over any other statement
     (``boxed_match_priority=0``); boxes are grouped as above (lighteval also reads
     ``$\boxed{3}$ and $\boxed{5}$`` as ``{3, 5}``); without a box the whole text goes to math-verify's
     extraction with lighteval's prediction configs ``(ExprExtractionConfig(),
     LatexExtractionConfig(boxed_match_priority=0))``; the gold is read with ``gold_format``
     (``"latex"``: ``LatexExtractionConfig()``; ``"expr"``: ``ExprExtractionConfig()``) and numbers
     are compared at ``float_rounding=5``. Where lighteval goes wrong this does not: it never merges
     boxes that are not joined (lighteval's ``boxed="all"`` normalisation merges every box inside one
     maths span), it reads the last ``k`` boxes of a ``k``-part gold as a set, and its fast path and
     normal forms fix the misreadings listed below.

3. **Fast path** (in the caller): equal normal forms are equal (spacing, ``\dfrac``, degrees, ``\$``,
   ``\text{}`` wrappers); two plain exact numbers (integers with or without thousands separators,
   decimals, ``a/b``, ``\frac{a}{b}``) are compared as fractions; times of day (``4:30 p.m.``) as
   times. A comma followed by a space separates list items, never thousands (``10, 100`` is not
   10100). Only verdicts math-verify would also reach are decided here, with three deliberate
   exceptions, each accepting only the same value: a trailing period in a box is punctuation; a
   time of day is not a ratio (math-verify reads ``4:30 \text{ p.m.}`` as 2/15 and rejects it); a
   percentage gold also equals its value as a number (``25\%`` and ``0.25``).
4. **Symbolic check** (in a worker process): math-verify's ``parse`` and ``verify(gold, answer)``
   (gold first, as its API intends) with a hard wall-clock timeout; multi-part answers are matched
   part by part (a perfect matching, any order). The gold's parse is cached in the worker. Parsed
   SymPy objects never cross the process boundary; only the verdict does, and the caller caches it.

Every outcome is a :class:`Verdict` that says which method decided it (``exact``, ``numeric``,
``symbolic``, ``no_answer``, ``too_long``, ``too_large``, ``unparsable_gold``, ``unparsable_answer``,
``timeout``, ``error``, ``env_error``). ``env_error`` means no verdict: the check could not run for a
reason that is not the answer's (its worker crashed again after one retry, or no worker came free
within the pool's queue deadline); callers score it as neutral and count it. ``too_large`` answers (say ``9^{9^{9^9}}``) are refused before SymPy tries
to evaluate them inside C arithmetic, where only killing the worker would stop it. A gold that math-verify cannot parse is flagged (``unparsable_gold``) and scores 0, not 1
(Open-RS's original reward gave 1.0). ``validate(items)`` checks that every gold verifies against
itself, so users can vet a dataset before training on it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from envs.core.process_pool import Outcome, PoolClosed, PoolFailure, ProcessPool, shared_pool
from envs.math.answers import (
    GOLD_FORMATS,
    OPEN_RS,
    PROTOCOLS,
    TRAINING,
    FinalAnswer,
    GoldAnswer,
    final_answer,
    parse_gold,
)
from envs.math.answers import normalize_answer  # noqa: F401 - re-exported
from envs.math.fast_path import (  # noqa: F401 - re-exported: the fast path's public names
    EXACT,
    NUMERIC,
    _analyse,
    _perfect_matching,
    exact_number,
    fast_compare,
    fast_match_parts,
)

logger = logging.getLogger(__name__)

SYMBOLIC = "symbolic"
NO_ANSWER, TOO_LONG, UNPARSABLE_GOLD, UNPARSABLE_ANSWER = "no_answer", "too_long", "unparsable_gold", "unparsable_answer"
TIMEOUT, ERROR, TOO_LARGE = "timeout", "error", "too_large"
ENV_ERROR = "env_error"  # the check could not run (worker crashed twice, pool busy or closed): no verdict
FAST_METHODS = frozenset({EXACT, NUMERIC})

# A response that ends by stating its answer in inline maths; math-verify's extraction reads exactly this span.
_FINAL_STATEMENT = re.compile(r"final answer is:?\s*\$([^$]{1,200})\$\s*\.?\s*$", re.IGNORECASE)
POOL_NAME = "agentr1-math"
_PRELOAD = ("envs.math.verify:warm_up",)


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
            "verify_error": float(self.method in (ERROR, UNPARSABLE_ANSWER, TOO_LONG, TOO_LARGE)),
            "gold_unparsable": float(self.method == UNPARSABLE_GOLD),
            "verify_env_error": float(self.method == ENV_ERROR),
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
    ``protocol`` (``"agentr1"`` or ``"open-rs"``) and ``gold_format`` (``"any"``, ``"latex"``,
    ``"expr"``) choose how answers are read; :func:`open_rs_verifier` builds the benchmark ids' one.
    ``text_extraction`` names the math-verify configs that read an unboxed answer (default: the
    protocol's; ``"latex"``, ``"latex-boxed-first"``, ``"expr"``).
    """

    def __init__(self, *, timeout: float = 5.0, max_answer_chars: int = 1_000, max_gold_chars: int = 2_000,
                 float_rounding: int = 6, strict: bool = True, require_boxed: bool = False, fast_path: bool = True,
                 cache_verdicts: bool = True, pool: ProcessPool | None = None, workers: int | None = None,
                 protocol: str = TRAINING, gold_format: str = "any", text_extraction: Sequence[str] | None = None):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if gold_format not in GOLD_FORMATS:
            raise ValueError(f"gold_format must be one of {', '.join(GOLD_FORMATS)}, got {gold_format!r}")
        self.protocol = protocol
        self.gold_format = gold_format
        default = OPEN_RS_EXTRACTION if protocol == OPEN_RS else DEFAULT_EXTRACTION
        self.text_extraction = tuple(text_extraction) if text_extraction is not None else default
        if not self.text_extraction or set(self.text_extraction) - {"latex", "latex-boxed-first", "expr"}:
            raise ValueError(f"text_extraction names math-verify configs: latex, latex-boxed-first, expr; got {text_extraction!r}")
        self.timeout = float(timeout)
        self.max_answer_chars = int(max_answer_chars)
        self.max_gold_chars = int(max_gold_chars)
        self.float_rounding = int(float_rounding)
        self.strict = bool(strict)
        self.require_boxed = bool(require_boxed)
        self.fast_path = bool(fast_path)
        self.cache_verdicts = bool(cache_verdicts)
        self._pool = pool
        self._workers = workers
        self._bad_golds: OrderedDict[str, str] = OrderedDict()
        self._lock_owner = os.getpid()
        self._lock_obj = threading.Lock()

    @property
    def _lock(self) -> threading.Lock:
        if self._lock_owner != os.getpid():  # a forked copy: the parent's lock may be held forever
            self._lock_owner, self._lock_obj = os.getpid(), threading.Lock()
        return self._lock_obj

    @property
    def pool(self) -> ProcessPool:
        if self._pool is None or self._pool.closed:
            self._pool = shared_pool(POOL_NAME, workers=self._workers, timeout=self.timeout, preload=_PRELOAD)
        return self._pool

    # ------------------------------------------------------------------ extraction
    def extract_answer(self, response: str, gold: Any = "0") -> tuple[str | None, str]:
        r"""``(answer, source)``: the final answer's text and where it came from (``"boxed"``,
        ``"text"`` for math-verify's own extraction, or ``"none"``), read as for ``gold``."""
        try:
            parsed = parse_gold(gold)
        except ValueError:
            parsed = GoldAnswer("0", ("0",))
        found = self._final(response, parsed)
        return found.text, found.source

    def _final(self, response: str, gold: GoldAnswer) -> FinalAnswer:
        return final_answer(response, gold, self.protocol, self.require_boxed)

    # ------------------------------------------------------------------ verification
    def verify(self, gold: Any, response: str) -> Verdict:
        """Is ``response``'s final answer equal to ``gold``? Never raises, never hangs."""
        started = time.perf_counter()
        pre = self._prepare(gold, response)
        if isinstance(pre, Verdict):
            return _timed(pre, started)
        try:
            outcome = self.pool.call(_symbolic_check, *pre.task, timeout=self.timeout)
        except (PoolClosed, PoolFailure) as exc:  # interpreter shutting down, or the pool was closed under us
            outcome = Outcome("crashed", error=str(exc))
        return _timed(self._from_outcome(pre, outcome), started)

    def verify_batch(self, pairs: Iterable[tuple[Any, str]]) -> list[Verdict]:
        """``verify`` for many ``(gold, response)`` pairs; symbolic checks run on all workers at once."""
        started = time.perf_counter()
        prepared = [self._prepare(gold, response) for gold, response in pairs]
        out: list[Verdict | None] = [p if isinstance(p, Verdict) else None for p in prepared]
        unique: dict[tuple, list[int]] = {}  # identical checks in one batch (GRPO samples often agree) run once
        for i, p in enumerate(prepared):
            if isinstance(p, _Pending):
                unique.setdefault(p.task, []).append(i)
        if unique:
            try:
                outcomes = self.pool.map(_symbolic_check, list(unique), timeout=self.timeout)
            except (PoolClosed, PoolFailure) as exc:
                outcomes = [Outcome("crashed", error=str(exc))] * len(unique)
            for indices, outcome in zip(unique.values(), outcomes, strict=True):
                for i in indices:
                    out[i] = self._from_outcome(prepared[i], outcome)  # type: ignore[arg-type]
        per_item = (time.perf_counter() - started) / max(1, len(out))
        return [replace(v, seconds=per_item) for v in out]  # type: ignore[arg-type]

    async def averify(self, gold: Any, response: str) -> Verdict:
        """``verify`` for asyncio code: the symbolic check waits on a helper thread, not the loop."""
        started = time.perf_counter()
        pre = self._prepare(gold, response)
        if isinstance(pre, Verdict):
            return _timed(pre, started)
        try:
            outcome = await self.pool.acall(_symbolic_check, *pre.task, timeout=self.timeout)
        except (PoolClosed, PoolFailure) as exc:
            outcome = Outcome("crashed", error=str(exc))
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
                             strict=self.strict, fast_path=False, pool=self.pool, protocol=self.protocol,
                             gold_format=self.gold_format, text_extraction=self.text_extraction)
        verdicts = probe.verify_batch([(g, f"\\boxed{{{_content_or_empty(g)}}}") for g in golds])
        report = ValidationReport(total=len(golds))
        for row, (gold, verdict) in enumerate(zip(golds, verdicts, strict=True)):
            if not verdict.correct:
                report.failures.append({"row": row, "answer": gold, "method": verdict.method, "detail": verdict.detail})
        return report

    # ------------------------------------------------------------------ internals
    def _prepare(self, gold: Any, response: str) -> Verdict | _Pending:
        try:
            parsed = parse_gold(gold)
        except Exception as exc:  # a gold we cannot even turn into text
            return Verdict(False, UNPARSABLE_GOLD, detail=f"{type(exc).__name__}: {exc}")
        gold_text = parsed.text
        found = self._final(response, parsed)
        answer, source = found.text, found.source
        if answer is None:
            return Verdict(False, NO_ANSWER)
        if source == "boxed" and max(len(answer), len(", ".join(found.parts))) > self.max_answer_chars:
            return Verdict(False, TOO_LONG, answer[:80] + "...", source, f"answer longer than {self.max_answer_chars} characters")
        if not gold_text or len(gold_text) > self.max_gold_chars:
            return Verdict(False, UNPARSABLE_GOLD, answer, source, "gold answer is empty or too long")
        whole: str | None = answer
        parts = found.parts
        if self.fast_path and source == "text":
            # "... The final answer is $X$." at the very end: math-verify's extraction (either
            # protocol's configs; no box, no "I hope" anchor) reads exactly X, so X's fast verdict is its
            stated = _FINAL_STATEMENT.search(answer[-400:])
            decided = fast_compare(gold_text, stated.group(1), self.float_rounding) if stated else None
            if decided is not None:
                return Verdict(decided[0], decided[1], stated.group(1), source)
        if self.fast_path and source == "boxed":
            decided = fast_compare(gold_text, answer, self.float_rounding)
            if decided is not None and decided[0]:
                return Verdict(True, decided[1], answer, source)
            by_parts = fast_match_parts(parsed.parts, parts, self.float_rounding) if parts else None
            if by_parts is not None and by_parts[0]:
                return Verdict(True, by_parts[1], ", ".join(parts), source)
            if decided is not None:
                whole = None  # settled: not equal as a whole
            if by_parts is not None:
                parts = ()  # settled: not equal part by part
            if whole is None and not parts:
                return Verdict(False, decided[1] if decided else NUMERIC, answer, source)
        with self._lock:
            bad = self._bad_golds.get(gold_text)
        if bad is not None:
            return Verdict(False, UNPARSABLE_GOLD, answer, source, bad)
        task = (gold_text, whole, source == "boxed", self.float_rounding, self.strict, self.gold_format,
                self.text_extraction, parsed.parts if parts else (), parts)
        if self.cache_verdicts:
            with _VERDICT_LOCK:
                cached = _VERDICT_CACHE.get(task)
                if cached is not None:
                    _VERDICT_CACHE.move_to_end(task)
            if cached is not None:
                return Verdict(cached[0], cached[1], answer, source)
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
            if self.cache_verdicts:
                with _VERDICT_LOCK:
                    _VERDICT_CACHE[pre.task] = (bool(correct), method)
                    while len(_VERDICT_CACHE) > _VERDICT_CACHE_SIZE:
                        _VERDICT_CACHE.popitem(last=False)
            return Verdict(bool(correct), method, pre.answer, pre.source)
        if outcome.status == "timeout":
            return Verdict(False, TIMEOUT, pre.answer, pre.source, outcome.error)
        if outcome.infra:  # not the answer's doing: no verdict, and never cached
            logger.warning("math verification could not run (%s): %s", outcome.status, outcome.error)
            return Verdict(False, ENV_ERROR, pre.answer, pre.source, f"{outcome.status}: {outcome.error}")
        logger.debug("verification failed: %s", outcome.error)
        return Verdict(False, ERROR, pre.answer, pre.source, outcome.error)


# Verdicts of symbolic checks, shared by every verifier in the process (keyed by the full task,
# settings included). Sampled responses to one prompt often box the same answer string.
_VERDICT_CACHE: OrderedDict[tuple, tuple[bool, str]] = OrderedDict()
_VERDICT_CACHE_SIZE = 65_536
_VERDICT_LOCK = threading.Lock()


def clear_caches() -> None:
    """Forget cached verdicts and fast-path analyses in this process (workers keep their gold parses)."""
    with _VERDICT_LOCK:
        _VERDICT_CACHE.clear()
    _analyse.cache_clear()


@dataclass(frozen=True)
class _Pending:
    gold: str
    answer: str
    source: str
    task: tuple


def _timed(verdict: Verdict, started: float) -> Verdict:
    return replace(verdict, seconds=max(0.0, time.perf_counter() - started))


# ---------------------------------------------------------------------------- gold answers
def gold_content(gold: Any) -> str:
    r"""The gold answer as the text inside its box: ``"\boxed{5}"``, ``"$5$"`` and ``5`` all give ``"5"``;
    several boxes give their contents as one list (``"1, 2"``)."""
    return parse_gold(gold).text


def _content_or_empty(gold: Any) -> str:
    try:
        return gold_content(gold)
    except (ValueError, TypeError):
        return ""


# ---------------------------------------------------------------------------- worker side
_GOLD_CACHE: OrderedDict[tuple[str, str], list] = OrderedDict()
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


_MAX_RESULT_DIGITS = 1e6  # an exact integer beyond this many digits is not a plausible answer
_MAX_FACTORIAL_ARG = 1e4


def _too_large(expr: Any) -> bool:
    """Would evaluating ``expr`` build an astronomically large number (``9^{9^{9^9}}``, ``(10^8)!``)?

    SymPy evaluates such powers inside C integer arithmetic where nothing can interrupt it, so the
    check would only end by killing the worker. Upper bounds on numeric sub-expressions are
    propagated in floating point (``inf`` when they overflow); symbols make a bound unknown.
    """
    try:
        import sympy
    except ImportError:  # pragma: no cover - math-verify depends on sympy
        return False
    if not isinstance(expr, sympy.Basic):
        return False
    try:
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Pow):
                base, exponent = _upper_bound(node.base), _upper_bound(node.exp)
                if base is not None and exponent is not None and base > 1 and exponent * math.log10(base) > _MAX_RESULT_DIGITS:
                    return True
            elif isinstance(node, sympy.factorial):
                arg = _upper_bound(node.args[0])
                if arg is not None and arg > _MAX_FACTORIAL_ARG:
                    return True
    except (RecursionError, TypeError, ValueError, OverflowError):
        return True
    return False


def _upper_bound(expr: Any, depth: int = 0) -> float | None:
    """An upper bound on ``|expr|`` for a symbol-free numeric expression, else ``None``."""
    import sympy

    if depth > 50:
        return math.inf
    if isinstance(expr, sympy.Integer):
        return float(abs(int(expr))) if abs(int(expr)).bit_length() < 1000 else math.inf
    if isinstance(expr, (sympy.Rational, sympy.Float)):
        return abs(float(expr))
    if expr in (sympy.pi, sympy.E):
        return 4.0
    if isinstance(expr, sympy.Pow):
        base, exponent = _upper_bound(expr.base, depth + 1), _upper_bound(expr.exp, depth + 1)
        if base is None or exponent is None:
            return None
        if base <= 1:
            return 1.0 if exponent >= 0 else None
        try:
            return base ** exponent
        except OverflowError:
            return math.inf
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        bounds = [_upper_bound(a, depth + 1) for a in expr.args]
        if any(b is None for b in bounds):
            return None
        if isinstance(expr, sympy.Add):
            return sum(bounds)  # type: ignore[arg-type]
        return math.prod(max(b, 1.0) for b in bounds)  # type: ignore[type-var]
    if isinstance(expr, sympy.factorial):
        arg = _upper_bound(expr.args[0], depth + 1)
        if arg is None:
            return None
        return math.inf if arg > 170 else float(math.factorial(int(arg)))
    return None


# One of each common answer shape. latex2sympy's ANTLR parser (its prediction DFA) and SymPy's code
# paths warm up lazily, so a worker's first checks of each shape cost several times the later ones;
# paying that at start-up keeps it outside every task's deadline.
_WARM_UP_PAIRS = (
    ("\\frac{2}{5}", "0.4"), ("2,500", "2500"), ("\\dfrac{5}{7}", "\\frac{10}{14}"), ("5\\sqrt{3}", "\\sqrt{75}"),
    ("16\\pi", "4^2\\pi"), ("(5, \\infty)", "[5, \\infty)"), ("(-\\infty, -2) \\cup (2, \\infty)", "(-2, 2)"),
    ("\\{1, 5\\}", "5, 1"), ("(8, 1)", "(1, 8)"), ("\\begin{pmatrix} 2 & 5 \\\\ 1 & 3 \\end{pmatrix}", "\\begin{bmatrix}2&5\\\\1&3\\end{bmatrix}"),
    ("\\text{Friday}", "\\text{Sunday}"), ("15\\%", "0.15"), ("45^\\circ", "45"), ("7", "7 \\text{ m}"),
    ("a^2 - 4", "(a+2)(a-2)"), ("y = 4x - 1", "y = -1 + 4x"), ("t \\ge 2", "t > 2"), ("\\binom{6}{2}", "4!"),
    ("\\log_3 9", "\\cos \\frac{\\pi}{3}"), ("\\$7.25", "7.25"), ("3\\sqrt{2} + 1", "1 + 3\\sqrt2"),
)


def warm_up() -> None:
    """Import math-verify and run one check of each common answer shape (see ``_WARM_UP_PAIRS``)."""
    for gold, answer in _WARM_UP_PAIRS:
        try:
            _symbolic_check(gold, answer, True, 6, True)
        except Exception:  # warming is best effort
            logger.debug("warm-up check failed for %r", gold, exc_info=True)
    _GOLD_CACHE.clear()
    from sympy.core.cache import clear_cache

    clear_cache()  # keep only the warmed code paths, not the warm-up's own expressions


# lighteval's prediction extraction in the Open-RS / open-r1 evaluation
OPEN_RS_EXTRACTION = ("expr", "latex-boxed-first")
DEFAULT_EXTRACTION = ("latex", "expr")  # math-verify's defaults


def _parse(text: str, configs: tuple[str, ...] = DEFAULT_EXTRACTION) -> list:
    """math-verify's ``parse`` with the named extraction configs (no SIGALRM timeout):
    ``"latex"`` (``LatexExtractionConfig()``), ``"latex-boxed-first"`` (``boxed_match_priority=0``),
    ``"expr"`` (``ExprExtractionConfig()``)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    made = {"latex": LatexExtractionConfig, "expr": ExprExtractionConfig,
            "latex-boxed-first": lambda: LatexExtractionConfig(boxed_match_priority=0)}
    return parse(text, extraction_config=[made[name]() for name in configs], parsing_timeout=None)


def _parse_boxed(text: str) -> list:
    r"""``text`` parsed as a box's content; if that yields only strings (math-verify cannot read
    ``\boxed{25\%}`` as a number, though it reads ``$25\%$``), as inline maths instead."""
    parsed = _parse(f"\\boxed{{{text}}}")
    if all(isinstance(p, str) for p in parsed) and "$" not in text:
        inline = _parse(f"${text}$")
        if any(not isinstance(p, str) for p in inline):
            return inline
    return parsed


def _parse_gold(gold: str, gold_format: str) -> list:
    key = (gold, gold_format)
    parsed = _GOLD_CACHE.get(key)
    if parsed is not None:
        _GOLD_CACHE.move_to_end(key)
        return parsed
    if gold_format == "expr":
        parsed = _parse(gold, ("expr",))
    else:
        # "latex": as lighteval reads a boxed solution (a box's content, else inline maths); "any":
        # wrapped as math-verify expects a gold ("$...$"), else as a box's content, else as it is
        wraps = [f"\\boxed{{{gold}}}", f"${gold}$"] if gold_format == "latex" else [f"${gold}$", f"\\boxed{{{gold}}}", gold]
        configs = ("latex",) if gold_format == "latex" else DEFAULT_EXTRACTION
        parsed = []
        for text in wraps if "$" not in gold else [f"\\boxed{{{gold}}}", gold]:
            attempt = _parse(text, configs)
            if any(not isinstance(p, str) for p in attempt):
                parsed = attempt
                break
            parsed = parsed or attempt
    _GOLD_CACHE[key] = parsed
    if len(_GOLD_CACHE) > _GOLD_CACHE_SIZE:
        _GOLD_CACHE.popitem(last=False)
    return parsed


def _symbolic_check(gold: str, answer: str | None, boxed: bool, float_rounding: int, strict: bool,
                    gold_format: str = "any", text_extraction: tuple[str, ...] = DEFAULT_EXTRACTION,
                    gold_parts: tuple[str, ...] = (), answer_parts: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Runs in a worker: math-verify's parse and ``verify(gold, answer)``; the gold parse is cached.

    ``answer`` (if given) is compared with the whole gold; ``answer_parts`` (if given) with
    ``gold_parts`` as a set: correct if either comparison is.
    """
    _setup_math_verify()
    from math_verify import verify

    parsed_gold = _parse_gold(gold, gold_format)
    if not parsed_gold:
        return False, UNPARSABLE_GOLD
    method = UNPARSABLE_ANSWER
    if answer is not None:
        if boxed:
            parsed_answer = _parse_boxed(answer)
        else:
            parsed_answer = _parse(answer, text_extraction)
        if parsed_answer:
            if any(_too_large(p) for p in parsed_answer):
                return False, TOO_LARGE
            if verify(parsed_gold, parsed_answer, float_rounding=float_rounding, strict=strict, timeout_seconds=None):
                return True, SYMBOLIC
            method = SYMBOLIC
    if answer_parts and len(answer_parts) == len(gold_parts):
        golds = [_parse_gold(g, gold_format) for g in gold_parts]
        answers = [_parse_boxed(a) for a in answer_parts]
        if any(_too_large(p) for parsed in answers for p in parsed):
            return False, TOO_LARGE
        if all(golds) and all(answers):
            equal = [[bool(verify(g, a, float_rounding=float_rounding, strict=strict, timeout_seconds=None))
                      for a in answers] for g in golds]
            return _perfect_matching(equal), SYMBOLIC
    return False, method


def default_verifier() -> MathVerifier:
    """A process-wide ``MathVerifier`` with default settings."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = MathVerifier()
        return _DEFAULT


_DEFAULT: MathVerifier | None = None
_DEFAULT_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _VERDICT_LOCK, _DEFAULT_LOCK, _DEFAULT
    _VERDICT_LOCK = threading.Lock()  # another parent thread may have held it at fork time
    _DEFAULT_LOCK = threading.Lock()
    _DEFAULT = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def open_rs_verifier(gold_format: str = "latex", **kwargs: Any) -> MathVerifier:
    """The verifier of the Open-RS evaluation protocol (lighteval's math metric, precision 5) for a
    benchmark whose gold is read with ``gold_format`` (``"latex"``: MATH-500, Minerva, OlympiadBench;
    ``"expr"``: AIME24, AMC23)."""
    kwargs.setdefault("float_rounding", 5)
    return MathVerifier(protocol=OPEN_RS, gold_format=gold_format, **kwargs)


def verify_many(golds: Sequence[Any], responses: Sequence[str], **kwargs: Any) -> list[Verdict]:
    """Convenience: ``MathVerifier(**kwargs).verify_batch(zip(golds, responses))``."""
    return MathVerifier(**kwargs).verify_batch(zip(golds, responses, strict=True))
