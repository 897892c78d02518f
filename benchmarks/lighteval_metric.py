"""lighteval 0.13.0's math metric, as the Open-RS evaluation ran it, in a separate interpreter.

lighteval pins ``latex2sympy2_extended==1.0.6`` (math-verify 0.9.0 needs a newer one), so it lives in
its own virtual environment (``ensure_venv``: ``lighteval`` and that pin without dependencies, plus
the few light packages its metrics module imports; everything else, torch included, is read from
the calling interpreter's site-packages through a ``.pth`` file, so nothing is installed twice and
the project's environment is never touched). ``verdicts(python, rows)`` runs the metric there.

The metric is open-r1's ``latex_gold_metric`` (``evaluate.py``): ``MultilingualExtractiveMatchMetric``
with ``fallback_mode="first_match"``, ``precision=5``, gold ``(LatexExtractionConfig(),)``,
prediction ``(ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0))``, ``max``
aggregation; ``gold_format="expr"`` gives its ``expr_gold_metric`` (AIME24, AMC23).

    <venv>/bin/python benchmarks/lighteval_metric.py < rows.json   # internal: prints verdicts as JSON
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

LIGHTEVAL = "lighteval==0.13.0"
PINS = ("latex2sympy2_extended==1.0.6",)
LIGHT_DEPS = ("sacrebleu", "scikit-learn", "pytablewriter", "nltk")


def ensure_venv(path: Path) -> Path:
    """The venv's interpreter, creating the venv first if needed (needs the package index once)."""
    python = path / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + ["--no-deps", LIGHTEVAL, *PINS], check=True)
    subprocess.run(pip + ["sympy", "numpy", "antlr4-python3-runtime==4.13.2", *LIGHT_DEPS], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_calling_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., read-only
    return python


def verdicts(python: Path, rows: list[dict]) -> tuple[list[bool], float]:
    """lighteval's verdict for each ``{"gold", "pred", "precision", "gold_format"}`` row, and the seconds
    the metric took (imports excluded)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(python), __file__], input=json.dumps(rows), capture_output=True, text=True,
                         check=True, env=env)
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    return payload["verdicts"], payload["seconds"]


def _run() -> None:
    import logging

    logging.disable(logging.WARNING)
    from lighteval.metrics.dynamic_metrics import MultilingualExtractiveMatchMetric
    from lighteval.metrics.utils.extractive_match_utils import ExprExtractionConfig, LatexExtractionConfig
    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc
    from lighteval.utils.language import Language

    rows = json.load(sys.stdin)
    metrics: dict[tuple[int, str], MultilingualExtractiveMatchMetric] = {}
    results = []
    start = time.perf_counter()
    for row in rows:
        key = (int(row.get("precision", 5)), row.get("gold_format", "latex"))
        if key not in metrics:
            gold_target = (ExprExtractionConfig(),) if key[1] == "expr" else (LatexExtractionConfig(),)
            metrics[key] = MultilingualExtractiveMatchMetric(
                language=Language.ENGLISH, fallback_mode="first_match", precision=key[0],
                gold_extraction_target=gold_target,
                pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig(boxed_match_priority=0)),
                aggregation_function=max)
        doc = Doc(query="", choices=[row["gold"]], gold_index=0)
        try:
            score = metrics[key].compute(doc, ModelResponse(text=[row["pred"]]))
        except Exception:  # a crash in the metric scores 0, as lighteval's own timeouts do
            score = 0.0
        results.append(bool(score))
    print(json.dumps({"verdicts": results, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    _run()
