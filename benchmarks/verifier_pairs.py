r"""The project's labelled verifier pairs: ``(gold, model output, label)``, labels written by hand.

Each base case lists a gold, answer forms that are mathematically the gold and forms that are not;
``build_pairs`` wraps every form in R1-style reasoning templates and adds several-box and no-box
outputs of the first forms; ``EXTRA_PAIRS`` are whole outputs (several boxes, a final-answer
statement after a box). ``benchmarks/data/verifier_pairs.jsonl`` is this set, written by
``python benchmarks/verifier.py --write-pairs``.
"""

from __future__ import annotations

import json
from pathlib import Path

PAIRS_PATH = Path(__file__).resolve().parent / "data" / "verifier_pairs.jsonl"
PM = "\\begin{pmatrix} 1 & 4 \\\\ 0 & 1 \\end{pmatrix}"

# (category, gold, equivalent answer forms, different answer forms) -- labels are mathematical truth.
BASE_CASES: list[tuple[str, str, list[str], list[str]]] = [
    ("integer", "42", ["42", "42.0", "\\mathbf{42}"], ["24", "41", "-42", "420"]),
    ("integer", "1000", ["1,000", "1000", "10^3", "1{,}000"], ["100", "10000", "999"]),
    ("integer", "-4", ["-4", "-4.0", "x = -4"], ["4", "-\\frac{1}{4}"]),
    ("integer", "5050", ["5050", "5,050"], ["5000", "4950"]),
    ("integer", "120", ["120", "5!", "\\binom{10}{3}"], ["720", "210"]),
    ("integer", "24", ["24", "2^3 \\cdot 3"], ["12", "36"]),
    ("integer", "5", ["x=5", "x = 5", "5"], ["x = 6", "-5"]),
    ("thousands", "14800", ["14,800", "14{,}800", "14800"], ["14,900", "1480", "148"]),
    ("thousands", "1234567", ["1,234,567", "1234567"], ["1,234,576", "123456"]),
    ("fraction", "\\frac{3}{4}", ["\\frac{3}{4}", "\\dfrac{3}{4}", "3/4", "0.75", "\\frac{6}{8}", "\\tfrac34"],
     ["\\frac{4}{3}", "0.7", "\\frac{3}{5}"]),
    ("fraction", "\\frac{1}{6}", ["\\frac{1}{6}", "\\dfrac16", "\\frac{6}{36}", "1/6"], ["\\frac{1}{36}", "\\frac{5}{36}", "0.16"]),
    ("fraction", "-\\frac{1}{3}", ["-\\frac{1}{3}", "\\frac{-1}{3}", "-1/3"], ["\\frac{1}{3}", "-3"]),
    ("fraction", "\\frac{11}{12}", ["\\frac{11}{12}", "\\dfrac{11}{12}", "\\frac{22}{24}"], ["\\frac{12}{11}", "\\frac{3}{7}"]),
    ("fraction", "\\frac{1}{2}", ["\\frac{1}{2}", "0.5", "0.50", "\\frac{2}{4}"], ["\\frac{1}{3}", "0.05", "2"]),
    ("sqrt", "6\\sqrt{2}", ["6\\sqrt{2}", "\\sqrt{72}", "6 \\sqrt 2", "3\\sqrt{8}"], ["6\\sqrt{3}", "\\sqrt{62}", "36\\sqrt{2}"]),
    ("sqrt", "3\\sqrt{5}", ["3\\sqrt{5}", "\\sqrt{45}"], ["5\\sqrt{3}", "\\sqrt{15}"]),
    ("sqrt", "\\frac{\\sqrt{3}}{2}", ["\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", "\\frac{1}{2}\\sqrt{3}", "\\frac{3}{2\\sqrt{3}}"],
     ["\\frac{\\sqrt{2}}{2}", "\\frac{1}{2}", "\\sqrt{3}"]),
    ("interval", "(4, \\infty)", ["(4,\\infty)", "\\left(4, \\infty\\right)", "(4, +\\infty)"], ["[4, \\infty)", "(-\\infty, 4)", "(4, 5)"]),
    ("interval", "[-3, 3]", ["[-3,3]", "\\left[-3, 3\\right]"], ["(-3, 3)", "[-3, 3)", "[0, 3]"]),
    ("interval", "[2, \\infty)", ["[2,\\infty)", "[2, \\infty)"], ["(2, \\infty)", "[-2, \\infty)"]),
    ("interval", "(-\\infty, -1) \\cup (1, \\infty)", ["(-\\infty,-1)\\cup(1,\\infty)", "(1, \\infty) \\cup (-\\infty, -1)"],
     ["(-1, 1)", "(-\\infty, -1] \\cup [1, \\infty)"]),
    ("set", "\\{2, 3\\}", ["\\{2,3\\}", "\\{3, 2\\}", "2, 3", "3, 2"], ["\\{2, 4\\}", "\\{2\\}", "\\{2, 3, 4\\}"]),
    ("set", "\\{-4, 4\\}", ["\\{4, -4\\}", "-4, 4"], ["\\{4\\}", "\\{-4, 0, 4\\}"]),
    ("tuple", "(7, 3)", ["(7,3)", "(7, 3)", "\\left(7, 3\\right)"], ["(3, 7)", "(7, 4)", "(7, 3, 0)"]),
    ("tuple", "(2, 2)", ["(2,2)", "\\left( 2, 2 \\right)"], ["(2, -2)", "(4, 2)"]),
    ("matrix", PM, ["\\begin{bmatrix}1&4\\\\0&1\\end{bmatrix}", "\\begin{pmatrix}1 & 4\\\\ 0 & 1\\end{pmatrix}"],
     ["\\begin{pmatrix} 1 & 4 \\\\ 1 & 0 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 0 & 1 \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", ["\\begin{pmatrix}1\\\\-2\\end{pmatrix}", "\\begin{bmatrix} 1 \\\\ -2 \\end{bmatrix}"],
     ["\\begin{pmatrix} -2 \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"]),
    ("units", "12", ["12 \\text{ cm}", "12\\,\\text{cm}", "12 \\text{ cm}^2"], ["13\\text{ cm}", "144 \\text{ cm}^2"]),
    ("units", "120^\\circ", ["120^\\circ", "120^{\\circ}", "120"], ["60^\\circ", "100"]),
    ("units", "12.50", ["\\$12.50", "12.5", "\\$12.5"], ["\\$12.05", "1250"]),
    ("percent", "25\\%", ["25\\%", "25", "25 \\%", "0.25"], ["30\\%", "75\\%", "2.5\\%"]),
    ("percent", "40\\%", ["40\\%", "40"], ["60\\%", "4\\%"]),
    ("text", "\\text{Monday}", ["\\text{Monday}", "Monday", "\\textbf{Monday}", "\\text{monday}"], ["\\text{Tuesday}", "Sunday"]),
    ("text", "\\text{composite}", ["\\text{composite}", "\\text{Composite}"], ["\\text{prime}"]),
    ("text", "\\text{(C)}", ["\\text{(C)}", "(C)", "C", "\\textbf{(C)}"], ["\\text{(B)}", "(D)", "B"]),
    ("expression", "x^2 - x - 6", ["x^2-x-6", "(x+2)(x-3)", "-6 - x + x^2"], ["x^2+x-6", "(x-2)(x+3)", "x^2-6"]),
    ("expression", "9\\pi", ["9\\pi", "9 \\pi", "\\pi \\cdot 9"], ["3\\pi", "9", "28.27"]),
    ("expression", "2\\sqrt{3} - 1", ["-1 + 2\\sqrt{3}", "2\\sqrt3-1"], ["2\\sqrt{3}+1", "2\\sqrt{3}"]),
    ("expression", "y = 2x + 3", ["y=2x+3", "y = 3 + 2x"], ["y = 2x - 3", "y = 3x + 2"]),
    ("decimal", "3.6", ["3.6", "3.60", "\\frac{18}{5}"], ["3.5", "36"]),
    ("decimal", "0.125", ["0.125", "\\frac{1}{8}", ".125"], ["0.12", "0.0125"]),
    ("time", "\\text{4:30 p.m.}", ["4:30 \\text{ p.m.}", "\\text{4:30 p.m.}", "4:30 \\text{ pm}", "\\text{4:30 PM}"],
     ["5:30 \\text{ p.m.}", "4:30 \\text{ a.m.}", "4:45 \\text{ p.m.}", "9:60"]),
    ("time", "9:15 \\text{ a.m.}", ["\\text{9:15 a.m.}", "9:15\\text{ am}"], ["9:15 \\text{ p.m.}", "9:51 \\text{ a.m.}"]),
    ("list-vs-thousands", "10100", ["10,100", "10{,}100", "10,\\!100", "10100"], ["10, 100", "1, 0100", "101"]),
    ("list-vs-thousands", "32349", ["32,349", "32349"], ["32, 349", "3, 2349"]),
    ("list-vs-thousands", "1125", ["1,125", "1125"], ["1, 125", "11, 25"]),
    ("list", "1, -2", ["-2, 1", "1,-2", "\\{1, -2\\}"], ["1, 2", "-2", "1", "1, -2, 3"]),
    ("list", "10, 100", ["100, 10", "10, 100"], ["10100", "10,100", "110"]),
    ("units", "45^\\circ", ["45^{\\circ}", "45", "45^\\circ"], ["135^\\circ", "54"]),
    ("units", "\\$1.50", ["1.50", "\\$1.5", "1.5"], ["\\$1.05", "15"]),
]

# Outputs that are not "reasoning + one boxed form": several boxes, a late final-answer statement.
# (category, gold, output, label)
EXTRA_PAIRS: list[tuple[str, str, str, bool]] = [
    ("multi-part", "1, -2", "The roots are $\\boxed{-2}$ and $\\boxed{1}$.", True),
    ("multi-part", "1, -2", "So $x = \\boxed{1}$ or $x = \\boxed{-2}$.", True),
    ("multi-part", "1, -2", "The roots are $\\boxed{-2}$ and $\\boxed{2}$.", False),
    ("multi-part", "1, -2", "The larger root is \\boxed{1}.", False),
    ("multi-part", "\\boxed{1} papers and \\boxed{2} bins", "She needs \\boxed{1} paper and \\boxed{2} bins.", True),
    ("multi-part", "\\boxed{1} papers and \\boxed{2} bins", "So the answer is \\boxed{1, 2}.", True),
    ("multi-part", "\\boxed{1} papers and \\boxed{2} bins", "So the answer is \\boxed{2}.", False),
    ("multi-part", "\\boxed{1} papers and \\boxed{2} bins", "She needs \\boxed{2} papers and \\boxed{2} bins.", False),
    ("multi-part", "5", "It is either \\boxed{3} or \\boxed{5}.", False),
    ("final-after-box", "10455", "The first part is \\boxed{255}; adding the rest, the final answer is $10,455$.", True),
    ("final-after-box", "255", "The first part is \\boxed{255}; adding the rest, the final answer is $10,455$.", False),
    ("final-after-box", "7", "Step one gives \\boxed{3}. Continuing, the final answer is $7$.", True),
    ("final-after-box", "3", "Step one gives \\boxed{3}. Continuing, the final answer is $7$.", False),
]


_REASONING = [
    "First I set up the quantities. From the statement, $a + b = 7$ and $2a = 10$, so $a = 5$ and $b = 2$. "
    "Then I combine them and double-check each step against the conditions.",
    "Let me think about this carefully. If we try small cases: for n = 1 we get 3, for n = 2 we get 8, for n = 3 "
    "we get 15. The pattern suggests a closed form, which I verify by substituting back.",
    "We are given the constraint, so let me rewrite it as $x^2 - 9 = 0$, which is a difference of squares. "
    "Wait, that is only part of the problem; combining with the second condition gives the result below.",
]
_TEMPLATES = [
    "<think>\n{r}\n</think>\n\nThe final answer is $\\boxed{{{a}}}$.",
    "{r}\n</think>\n\n**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]",
    "Let me solve this step by step. {r} So the answer is \\boxed{{{a}}}.",
]


def build_pairs() -> list[dict]:
    """The labelled set: every answer form in several templates, plus several-box and no-box outputs."""
    pairs: list[dict] = []
    for case_index, (category, gold, same, different) in enumerate(BASE_CASES):
        for forms, label in ((same, True), (different, False)):
            for form_index, form in enumerate(forms):
                for t_index, template in enumerate(_TEMPLATES):
                    reasoning = _REASONING[(case_index + form_index + t_index) % len(_REASONING)]
                    pairs.append({"gold": gold, "output": template.format(r=reasoning, a=form), "label": label,
                                  "category": category})
        reasoning = _REASONING[case_index % len(_REASONING)]
        right, wrong = same[0], different[0]
        pairs.append({"gold": gold, "label": True, "category": "several-boxes",
                      "output": f"{reasoning} My first attempt gave \\boxed{{{wrong}}}, but I made a slip. "
                                f"Rechecking, the answer is \\boxed{{{right}}}."})
        pairs.append({"gold": gold, "label": False, "category": "several-boxes",
                      "output": f"{reasoning} I first wrote \\boxed{{{right}}}, then changed my mind: \\boxed{{{wrong}}}."})
        pairs.append({"gold": gold, "label": True, "category": "no-box",
                      "output": f"<think>\n{reasoning}\n</think>\n\nThe final answer is ${right}$."})
        pairs.append({"gold": gold, "label": False, "category": "no-box",
                      "output": f"<think>\n{reasoning}\n</think>\n\nThe final answer is ${wrong}$."})
    for category, gold, output, label in EXTRA_PAIRS:
        pairs.append({"gold": gold, "output": output, "label": label, "category": category})
    return pairs


def write_pairs(path: Path) -> int:
    """Write the labelled set atomically."""
    from envs.core.io import atomic_write_text

    pairs = build_pairs()
    atomic_write_text(path, "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs))
    return len(pairs)


def load_pairs(path: Path, limit: int | None) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        pairs = [json.loads(line) for line in fh if line.strip()]
    return pairs[:limit] if limit else pairs
