"""``triage eval``: score the classifier on a labelled corpus of real error messages.

Corpus format (JSON Lines, as ``shared/corpus/error-messages.jsonl``): one object per line with
``id``, ``adapter``, ``message`` and ``label`` — ``transient``, ``deterministic``, ``conditional``
(transient, but worth one retry) or ``ambiguous`` — plus optional ``reason`` and ``source``.

Scoring: a ``conditional`` message is expected to be classified transient (and capped at one retry);
``ambiguous`` ones are shown in the confusion table but left out of precision and recall. The one
unforgivable miss is a deterministic message classified transient — it would be retried, burning
warehouse money and hiding a bug — so any such miss makes the command fail.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from triage.classify import RuleSet, classify
from triage.errors import ConfigError
from triage.models import Classification

LABELS = ("transient", "conditional", "deterministic", "ambiguous")
PREDICTIONS = ("transient", "deterministic", "unknown")


@dataclass(frozen=True)
class Entry:
    id: str
    adapter: str | None
    message: str
    label: str
    reason: str = ""


@dataclass
class Score:
    results: list[tuple[Entry, Classification]]
    confusion: Counter = field(default_factory=Counter)  # (label, prediction) -> n

    def expected(self, entry: Entry) -> str | None:
        return {"conditional": "transient", "ambiguous": None}.get(entry.label, entry.label)

    def precision_recall(self, verdict: str) -> tuple[float, float, int, int, int]:
        """(precision, recall, true positives, predicted, actual) over non-ambiguous entries."""
        scored = [(self.expected(e), c.verdict) for e, c in self.results if self.expected(e)]
        tp = sum(1 for exp, got in scored if exp == verdict and got == verdict)
        predicted = sum(1 for _, got in scored if got == verdict)
        actual = sum(1 for exp, _ in scored if exp == verdict)
        return (tp / predicted if predicted else 1.0, tp / actual if actual else 1.0, tp, predicted, actual)

    @property
    def misses(self) -> list[tuple[Entry, Classification]]:
        return [(e, c) for e, c in self.results if self.expected(e) and c.verdict != self.expected(e)]

    @property
    def unsafe(self) -> list[tuple[Entry, Classification]]:
        """Deterministic messages that would be retried."""
        return [(e, c) for e, c in self.results if e.label == "deterministic" and c.verdict == "transient"]

    @property
    def uncapped_conditional(self) -> list[tuple[Entry, Classification]]:
        """Conditional messages recognised as transient but allowed more than one retry."""
        return [(e, c) for e, c in self.results
                if e.label == "conditional" and c.verdict == "transient" and (c.max_retries or 99) > 1]


def load_corpus(path: str | Path) -> list[Entry]:
    """Read a JSONL corpus; a bad line is a ConfigError naming the line and the field."""
    entries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected an object")
        for key in ("message", "label"):
            if not isinstance(item.get(key), str):
                raise ConfigError(f"{where}: '{key}' missing or not a string")
        if item["label"] not in LABELS:
            raise ConfigError(f"{where}: label {item['label']!r} is not one of {', '.join(LABELS)}")
        entries.append(Entry(id=str(item.get("id", f"line{number}")), adapter=item.get("adapter"),
                             message=item["message"], label=item["label"], reason=item.get("reason", "")))
    if not entries:
        raise ConfigError(f"{path}: no entries")
    return entries


def evaluate(entries: list[Entry], rules: RuleSet) -> Score:
    score = Score(results=[])
    for entry in entries:
        c = classify(entry.message, adapter=entry.adapter, rules=rules, source="corpus")
        score.results.append((entry, c))
        score.confusion[(entry.label, c.verdict)] += 1
    return score


def render(score: Score, width: int = 110) -> str:
    lines = [f"{len(score.results)} messages", "", "confusion (rows: label, columns: classified as)"]
    lines.append(f"  {'':<14}" + "".join(f"{p:>15}" for p in PREDICTIONS))
    for label in LABELS:
        if any(e.label == label for e, _ in score.results):
            lines.append(f"  {label:<14}" + "".join(f"{score.confusion[(label, p)]:>15}" for p in PREDICTIONS))
    lines += ["", "per verdict (conditional counts as transient; ambiguous left out)"]
    for verdict in ("transient", "deterministic"):
        p, r, tp, predicted, actual = score.precision_recall(verdict)
        lines.append(f"  {verdict:<14} precision {p:6.1%} ({tp}/{predicted})   recall {r:6.1%} ({tp}/{actual})")
    lines += ["", f"deterministic classified transient (would be retried): {len(score.unsafe)}",
              f"conditional recognised but allowed more than one retry: {len(score.uncapped_conditional)}"]
    misses = score.misses + score.uncapped_conditional
    if misses:
        lines += ["", "misses:"]
        for e, c in misses:
            got = f"{c.verdict}/{c.category}" + (f" via {c.rule}" if c.rule else "")
            lines.append(f"  {e.id} [{e.adapter}] labelled {e.label}, classified {got}")
            message = " ".join(e.message.split())
            lines.append(f"      {message[:width]}{'…' if len(message) > width else ''}")
    return "\n".join(lines) + "\n"
