"""Answer reading (golds, final answers, normal forms) and the fast path checked against math-verify."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.math.answers import (
    OPEN_RS,
    clock_time,
    final_answer,
    list_elements,
    normalize_answer,
    parse_gold,
    remove_reasoning_pairs,
)
from envs.math.verify import _symbolic_check, fast_compare, fast_match_parts


def test_gold_lists_and_boxes_become_parts():
    assert parse_gold("1,-2").parts == ("1", "-2")
    assert parse_gold("\\{1, -2\\}").parts == ("1", "-2")
    assert parse_gold("{1,2,3}").parts == ("1", "2", "3")
    two = parse_gold("\\boxed{1} papers and \\boxed{2} bins")
    assert two.parts == ("1", "2") and two.text == "1, 2" and two.multi_part
    assert parse_gold("\\boxed{1} no no no no no \\boxed{2}").text == "2"  # not one answer: the last box
    assert parse_gold("$\\boxed{a} + \\boxed{b}$").parts == ("a", "b")  # one maths span, as math-verify reads it
    for single in ("10,100", "1,234,567", "(1, 2)", "[0, 1)", "x", "$1$ and $2$"):
        assert not parse_gold(single).multi_part, single
    assert list_elements("1,000, 2") == ("1,000, 2",)  # a thousands separator inside a list: math-verify decides


def test_final_answer_rules_per_protocol():
    gold, pair = parse_gold("5"), parse_gold("1, -2")
    assert final_answer("\\boxed{3}, then a slip: it is \\boxed{5}", gold).text == "5"
    assert final_answer("\\boxed{3} or \\boxed{5}", gold).text == "3, 5"  # a hedge is one two-part answer
    assert final_answer("\\boxed{-2} and later \\boxed{1}", pair).parts == ("-2", "1")
    late = "\\boxed{255} and so on, so the final answer is $10,455$."
    assert final_answer(late, gold).source == "text"  # training: the statement after the box wins
    assert final_answer(late, gold, OPEN_RS).text == "255"  # lighteval: boxes first
    assert final_answer(late, gold, require_boxed=True).text == "255"
    inside = "<think>\nmaybe \\boxed{3}\n</think>\nThe answer is $5$."
    assert final_answer(inside, gold).source == "text"  # a box inside the reasoning is no answer
    assert final_answer(inside, gold, OPEN_RS).source == "text"  # lighteval drops the think block too
    assert final_answer("<think>\nit is 5", gold).source == "none"  # cut off inside the reasoning
    assert final_answer("<think>\nit is 5", gold, OPEN_RS).source == "text"  # lighteval reads it anyway
    assert final_answer("The final answer is $5$.", gold).source == "text"
    assert remove_reasoning_pairs("<think>a \\boxed{1}</think> b") == " b"
    assert remove_reasoning_pairs("a</think> b") == "a</think> b"


def test_normal_forms_and_times():
    assert normalize_answer("10, 100") != normalize_answer("10,100")
    assert normalize_answer("\\text{4:30 p.m.}") == normalize_answer("4:30 \\text{ p.m.}")
    assert normalize_answer("45^{\\circ}") == normalize_answer("45°") == "45"
    assert clock_time("4:30 \\text{ p.m.}") == (4, 30, "p")
    assert clock_time("4:75 pm") is None and clock_time("3:4") is None
    assert fast_compare("\\text{4:30 p.m.}", "16:30")[0]
    assert not fast_compare("\\text{4:30 p.m.}", "4:30 \\text{ a.m.}")[0]
    assert fast_compare("3:4", "6:8") is None  # a ratio, not a time: math-verify decides
    assert fast_match_parts(("1", "-2"), ("-2", "1")) == (True, "numeric")
    assert fast_match_parts(("1", "-2"), ("1", "1")) == (False, "numeric")


_DIGITS = st.integers(min_value=0, max_value=999_999)


def _thousands(n: int) -> str:
    return f"{n:,}"


@st.composite
def _number_or_list(draw) -> str:
    kind = draw(st.sampled_from(["plain", "thousands", "braced", "list", "spaced-list", "set", "tuple", "decimal",
                                 "interval"]))
    a, b = draw(_DIGITS), draw(st.integers(min_value=0, max_value=999))
    if kind == "plain":
        return str(a)
    if kind == "thousands":
        return _thousands(a)
    if kind == "braced":
        return _thousands(a).replace(",", "{,}")
    if kind == "list":
        return f"{a},{b:03d}" if draw(st.booleans()) else f"{a},{b}"
    if kind == "spaced-list":
        return f"{a}, {b:03d}" if draw(st.booleans()) else f"{a}, {b}"
    if kind == "set":
        return f"\\{{{a}, {b}\\}}"
    if kind == "tuple":
        return f"({a},{b})"
    if kind == "interval":  # same or different brackets, endpoints in either order
        low, high = sorted((a % 20, b % 20)) if draw(st.booleans()) else (a % 20, b % 20)
        return f"{draw(st.sampled_from('(['))}{low}, {high}{draw(st.sampled_from(')]'))}"
    return f"{a}.{b}"


@st.composite
def _pairs(draw) -> tuple[str, str]:
    gold = draw(_number_or_list())
    if draw(st.booleans()):  # the same digits, regrouped: the shapes that fooled the old fast path
        digits = gold.replace(",", "").replace(" ", "").replace("{}", "")
        if digits.isdigit() and len(digits) > 3:
            cut = draw(st.integers(min_value=1, max_value=len(digits) - 1))
            return gold, draw(st.sampled_from([f"{digits[:cut]}, {digits[cut:]}", f"{digits[:cut]},{digits[cut:]}",
                                               digits, f"{int(digits):,}"]))
    if gold[:1] in "([" and draw(st.booleans()):  # the same endpoints, brackets redrawn
        return gold, draw(st.sampled_from("([")) + gold[1:-1] + draw(st.sampled_from(")]"))
    if gold.startswith("\\{") and draw(st.booleans()):  # a set against the bare list
        return gold, gold[2:-2]
    return gold, draw(_number_or_list())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=_pairs())
def test_fast_path_verdicts_are_math_verifys(pair):
    """Lists against thousands separators, sets, tuples, decimals: whatever the fast path decides,
    math-verify (run here, in-process) decides the same."""
    gold, answer = pair
    decided = fast_compare(gold, answer)
    if decided is None:
        return
    reference, _ = _symbolic_check(gold, answer, True, 6, True)
    assert decided[0] == reference, (gold, answer, decided)


_PIECES = ["\\boxed{", "}", "{", "$", ",", ", ", " and ", " or ", "<think>", "</think>", "final answer is ", "1", "000",
           "\\{", "\\}", "(", ")", "\\text{", "p.m.", ":", "30", "\\!", " "]


@given(text=st.one_of(st.lists(st.sampled_from(_PIECES), max_size=25).map("".join), st.text(max_size=80)))
def test_reading_answers_never_raises(text):
    gold = parse_gold(text) if text.strip() else parse_gold("1")
    assert gold.parts and all(isinstance(p, str) for p in gold.parts)
    for protocol in ("agentr1", OPEN_RS):
        found = final_answer(text, gold, protocol)
        assert found.source in ("boxed", "text", "none") and (found.text is None) == (found.source == "none")
    assert isinstance(normalize_answer(text), str)
