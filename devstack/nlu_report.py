"""Summarise Rasa's NLU cross-validation reports into one Markdown file, and gate on them.

Usage: ``python -m devstack.nlu_report REPORT_DIR OUT.md``. Exits 1 when the
weighted intent F1 or the entity F1 falls below the floor we hold the model to.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

INTENT_F1_FLOOR = 0.88
ENTITY_F1_FLOOR = 0.85


def _load(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"missing report {path}: did rasa test nlu run?")
    return json.loads(path.read_text())


def main(report_dir: str, out: str) -> int:
    reports = Path(report_dir)
    intents = _load(reports / "intent_report.json")
    entities = _load(reports / "DIETClassifier_report.json")
    intent_f1 = intents["weighted avg"]["f1-score"]
    entity_f1 = entities["weighted avg"]["f1-score"]
    lines = [
        "# NLU cross-validation (3 folds)",
        "",
        f"- intent weighted F1: **{intent_f1:.3f}** (floor {INTENT_F1_FLOOR})",
        f"- entity weighted F1: **{entity_f1:.3f}** (floor {ENTITY_F1_FLOOR})",
        "",
        "| label | kind | precision | recall | F1 | support |",
        "|---|---|---|---|---|---|",
    ]
    for kind, report in (("intent", intents), ("entity", entities)):
        for label, row in sorted(report.items()):
            if not isinstance(row, dict) or "f1-score" not in row or label.endswith("avg"):
                continue
            lines.append(
                f"| {label} | {kind} | {row['precision']:.3f} | {row['recall']:.3f} "
                f"| {row['f1-score']:.3f} | {row['support']} |"
            )
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:5]))
    ok = intent_f1 >= INTENT_F1_FLOOR and entity_f1 >= ENTITY_F1_FLOOR
    if not ok:
        print(f"NLU quality below the floor; see {out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m devstack.nlu_report REPORT_DIR OUT.md")
    sys.exit(main(sys.argv[1], sys.argv[2]))
