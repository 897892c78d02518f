import json

from hypothesis import given
from hypothesis import strategies as st

from envs.core.parsing import count_think_blocks, extract_last_boxed, extract_tag, parse_turn, strip_reasoning, tag_spans

TAGS = {"search": "query", "calculator": "expression"}


def test_hermes_call_with_object_and_string_arguments():
    turn = parse_turn('<tool_call>{"name": "search", "arguments": {"query": "Paris"}}</tool_call>'
                      '<tool_call>{"name": "search", "arguments": "{\\"query\\": \\"Rome\\"}"}</tool_call>')
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("search", {"query": "Paris"}), ("search", {"query": "Rome"})]
    assert turn.errors == []


def test_tag_form_fills_the_declared_argument():
    turn = parse_turn("<think>maybe <search>ignored</search></think> <search> capital of France </search>", tag_tools=TAGS)
    assert [(c.name, c.arguments, c.form) for c in turn.tool_calls] == [("search", {"query": "capital of France"}, "tag")]


def test_calls_inside_reasoning_do_not_count():
    turn = parse_turn('<think><tool_call>{"name": "search", "arguments": {}}</tool_call></think>The answer is 4.')
    assert not turn.attempted_tool_use


def test_malformed_calls_become_named_errors():
    cases = {
        '<tool_call>{"name": "search", "arguments": {"query": "a"}</tool_call>': "malformed_json",
        "<tool_call>[1, 2]</tool_call>": "malformed_json",
        '<tool_call>{"arguments": {}}</tool_call>': "missing_name",
        '<tool_call>{"name": "  ", "arguments": {}}</tool_call>': "missing_name",
        '<tool_call>{"name": "search", "arguments": [1]}</tool_call>': "bad_arguments",
        '<tool_call>{"name": "search", "arguments": "not json"}</tool_call>': "bad_arguments",
        '<tool_call>{"name": "search"': "unclosed_tag",
    }
    for text, kind in cases.items():
        turn = parse_turn(text)
        assert [e.kind for e in turn.errors] == [kind], text
        assert turn.tool_calls == []


def test_unclosed_tag_after_complete_call_reports_both():
    turn = parse_turn("<search>a</search><search>b", tag_tools=TAGS)
    assert [c.arguments["query"] for c in turn.tool_calls] == ["a"]
    assert [e.kind for e in turn.errors] == ["unclosed_tag"]


def test_max_calls_caps_the_number_of_calls():
    text = "".join(f"<search>q{i}</search>" for i in range(20))
    assert len(parse_turn(text, tag_tools=TAGS, max_calls=3).tool_calls) == 3


def test_boxed_takes_the_last_complete_box_and_never_merges():
    assert extract_last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert extract_last_boxed(r"\boxed{a} and an unfinished \boxed{b") == "a"
    assert extract_last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert extract_last_boxed(r"so \boxed 7$.") == "7"
    assert extract_last_boxed(r"\fbox{3}") == "3"
    assert extract_last_boxed("no box") is None


def test_tag_helpers():
    assert extract_tag("<answer>a</answer> <answer> b </answer>", "answer") == "b"
    assert extract_tag("<answer>a", "answer") is None
    assert strip_reasoning("<think>x</think>rest") == "rest"
    assert strip_reasoning("no think") == "no think"
    assert count_think_blocks("<think>a</think><think>b</think><think>") == 2
    assert tag_spans("<a>1</a><a>2", "a") == ([(3, 4)], True)


@given(st.text(max_size=400))
def test_parse_turn_is_total(text):
    turn = parse_turn(text, tag_tools=TAGS)
    for call in turn.tool_calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
        json.dumps(call.arguments, default=str)
    extract_last_boxed(text)
    extract_tag(text, "answer")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12))
def test_any_json_payload_is_either_a_call_or_an_error(payload):
    turn = parse_turn(f"<tool_call>{json.dumps(payload)}</tool_call>")
    assert len(turn.tool_calls) + len(turn.errors) == 1


@given(st.text(alphabet="{}\\boxed ", max_size=300))
def test_boxed_content_is_brace_balanced(text):
    content = extract_last_boxed(text)
    if content is not None and content.startswith("{") is False:
        depth = 0
        for i, ch in enumerate(content):
            if ch in "{}" and (i == 0 or content[i - 1] != "\\"):
                depth += 1 if ch == "{" else -1
                assert depth >= 0


def test_malformed_attempts_are_capped_like_calls():
    # 2,000 broken calls in one turn used to give 2,000 errors (and 2,000 penalties).
    turn = parse_turn("<tool_call></tool_call>" * 2000 + "<search>q</search>", tag_tools=TAGS, max_calls=8)
    assert len(turn.errors) + len(turn.tool_calls) == 8
    assert turn.tool_calls == [] and all(e.kind == "malformed_json" for e in turn.errors)


def test_calls_and_errors_keep_text_order():
    text = ('<search>first</search><tool_call>{"name": "search", "arguments": {"query": "second"}}</tool_call>'
            "<calculator>third</calculator><tool_call>{oops}</tool_call><search>fourth</search>")
    turn = parse_turn(text, tag_tools=TAGS, max_calls=3)
    assert [list(c.arguments.values())[0] for c in turn.tool_calls] == ["first", "second", "third"]
    assert turn.errors == []


def test_tag_inside_a_json_call_is_not_a_second_call():
    text = '<tool_call>{"name": "search", "arguments": {"query": "<search>x</search>"}}</tool_call>'
    turn = parse_turn(text, tag_tools=TAGS)
    assert [(c.form, c.arguments) for c in turn.tool_calls] == [("json", {"query": "<search>x</search>"})]
    unclosed = parse_turn('<tool_call>{"name": "search", "arguments": {"query": "<search>"}}</tool_call>', tag_tools=TAGS)
    assert unclosed.errors == [] and len(unclosed.tool_calls) == 1


def test_deeply_nested_arguments_are_rejected():
    import pickle

    deep = "[" * 900 + "]" * 900
    turn = parse_turn('<tool_call>{"name": "search", "arguments": {"query": "a", "x": %s}}</tool_call>' % deep)
    assert [e.kind for e in turn.errors] == ["bad_arguments"] and turn.tool_calls == []
    ok = parse_turn('<tool_call>{"name": "search", "arguments": {"x": %s}}</tool_call>' % ("[" * 30 + "]" * 30))
    assert len(ok.tool_calls) == 1
    pickle.dumps(turn)


def test_nested_boxes_give_the_innermost_last_one():
    assert extract_last_boxed("\\boxed{" * 3 + "7" + "}" * 3) == "7"
    assert extract_last_boxed("\\boxed{" * 9000 + "}" * 9000) == ""
    assert extract_last_boxed("\\boxed{1} \\boxed{2") == "1"


F = "`" * 3  # a code fence


def test_fenced_code_blocks_are_calls_of_the_fence_tool():
    text = (f"First I count.\n{F}python\nn = 0\nfor i in range(3):\n    n += i\nprint(n)\n{F}\nthen a list:\n"
            f"  {F}python\n  print([1, 2])\n  {F}\n")
    turn = parse_turn(text, fence_tools={"python": "code"})
    assert [c.arguments["code"] for c in turn.tool_calls] == ["n = 0\nfor i in range(3):\n    n += i\nprint(n)",
                                                              "print([1, 2])"]  # an indented block is dedented
    assert {c.form for c in turn.tool_calls} == {"fence"} and not turn.errors


def test_other_fences_and_unclosed_blocks():
    other = parse_turn(f"{F}python3\nx\n{F}\n{F}output\n5\n{F}\n{F}py\nx\n{F}", fence_tools={"python": "code"})
    assert not other.attempted_tool_use  # only the tool's own language opens a call
    unclosed = parse_turn(f"{F}python\nprint(1)\n", fence_tools={"python": "code"})
    assert not unclosed.tool_calls and [e.kind for e in unclosed.errors] == ["unclosed_fence"]
    inline = parse_turn(f"Run {F}python\nprint(1)\nprint(2) {F} not a close\n{F}", fence_tools={"python": "code"})
    assert inline.tool_calls[0].arguments["code"] == "print(1)\nprint(2) ``` not a close"
    inside = parse_turn('<tool_call>{"name": "python", "arguments": {"code": "s = \'' + F + 'python\\\\nx\\\\n' + F + '\'"}}'
                        "</tool_call>", fence_tools={"python": "code"})
    assert len(inside.tool_calls) == 1 and inside.tool_calls[0].form == "json"  # a fence inside a JSON call is its text
    thinking = parse_turn(f"<think>\n{F}python\nprint(1)\n{F}\n</think>\nThe answer is 1.", fence_tools={"python": "code"})
    assert not thinking.attempted_tool_use


@given(st.lists(st.sampled_from(["`", "\n", " ", "python", "x", "<tool_call>", "</tool_call>", "{", "}"]),
                max_size=120).map("".join))
def test_fenced_parsing_is_total(text):
    turn = parse_turn(text, fence_tools={"python": "code"})
    for call in turn.tool_calls:
        if call.form == "fence":
            assert call.name == "python" and isinstance(call.arguments["code"], str)
            assert call.raw in text and call.raw.startswith("```python") and call.raw.endswith("```")


def test_fenced_parsing_is_linear_on_adversarial_input():
    import time

    for text in ("`" * 300_000, (F + "python\n" + "x``` " * 50_000), F + "python\n" + ("a" * 10 + F) * 30_000):
        start = time.perf_counter()
        parse_turn(text, fence_tools={"python": "code"})
        assert time.perf_counter() - start < 2.0
