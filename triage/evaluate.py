"""``triage eval``: score the classifier on a labelled corpus of real error messages.

Corpus format (JSON Lines, as ``shared/corpus/error-messages.jsonl``): one object per line with
``id``, ``adapter``, ``message`` and ``label`` — ``transient``, ``deterministic``, ``conditional``
(transient, but worth one retry) or ``ambiguous`` — plus optional ``reason`` and ``source``.

Scoring: each label is expected as the same verdict; the retry decision only cares whether a message is
retryable (transient or conditional), so recall is reported for that group and for deterministic.
``ambiguous`` ones are shown in the confusion table but left out. The one unforgivable miss is a
deterministic message classified transient without a cap of one retry — it would be retried again and
again, burning warehouse money and hiding a bug — so any such miss makes the command fail.

The corpus is split by a hash of each id into a tuning part (about two thirds) and a held-out part
(see ``part_of``); both are reported. Rules are written against vendor documentation and checked on
the tuning part; the held-out part measures how that generalises.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from triage.classify import RuleSet, classify
from triage.decide import retry_cap
from triage.errors import ConfigError
from triage.models import Classification

LABELS = ("transient", "conditional", "deterministic", "ambiguous")
PREDICTIONS = ("transient", "conditional", "deterministic", "unknown")
RETRYABLE = frozenset({"transient", "conditional"})

#: The corpus is split by a fixed rule so that nobody can tune rules against the held-out part by
#: accident: an entry is held out when the SHA-256 of its id is divisible by 3 (about a third).
HELD_OUT_MODULUS = 3
PARTS = ("tuning", "held-out")


def part_of(entry_id: str) -> str:
    """``"held-out"`` or ``"tuning"``: fixed by the id alone, so adding entries never moves old ones."""
    digest = int(hashlib.sha256(entry_id.encode("utf-8")).hexdigest(), 16)
    return "held-out" if digest % HELD_OUT_MODULUS == 0 else "tuning"


@dataclass(frozen=True)
class Entry:
    id: str
    adapter: str | None
    message: str
    label: str
    reason: str = ""

    @property
    def part(self) -> str:
        return part_of(self.id)


@dataclass
class Score:
    results: list[tuple[Entry, Classification]]
    confusion: Counter = field(default_factory=Counter)  # (label, prediction) -> n

    def part(self, name: str) -> Score:
        """The score of one part of the corpus (``tuning`` or ``held-out``)."""
        sub = Score(results=[(e, c) for e, c in self.results if e.part == name])
        for e, c in sub.results:
            sub.confusion[(e.label, c.verdict)] += 1
        return sub

    def expected(self, entry: Entry) -> str | None:
        return None if entry.label == "ambiguous" else entry.label

    def _scored(self) -> list[tuple[Entry, Classification]]:
        return [(e, c) for e, c in self.results if self.expected(e)]

    def recall(self, labels: frozenset[str], accepted: frozenset[str]) -> tuple[float, int, int]:
        """Share of entries labelled one of ``labels`` classified as one of ``accepted``."""
        actual = [(e, c) for e, c in self._scored() if e.label in labels]
        hit = sum(1 for _, c in actual if c.verdict in accepted)
        return (hit / len(actual) if actual else 1.0, hit, len(actual))

    def precision(self, verdicts: frozenset[str], labels: frozenset[str]) -> tuple[float, int, int]:
        """Of the entries classified one of ``verdicts``, the share labelled one of ``labels``."""
        predicted = [(e, c) for e, c in self._scored() if c.verdict in verdicts]
        hit = sum(1 for e, _ in predicted if e.label in labels)
        return (hit / len(predicted) if predicted else 1.0, hit, len(predicted))

    def precision_recall(self, verdict: str) -> tuple[float, float, int, int, int]:
        """(precision, recall, true positives, predicted, actual); ``transient`` means retryable
        (transient or conditional) on both sides, as the retry decision sees it."""
        group = RETRYABLE if verdict in RETRYABLE else frozenset({verdict})
        p, tp, predicted = self.precision(group, group)
        r, _, actual = self.recall(group, group)
        return (p, r, tp, predicted, actual)

    @property
    def unknown_share(self) -> float:
        scored = self._scored()
        return sum(1 for _, c in scored if c.verdict == "unknown") / len(scored) if scored else 0.0

    @property
    def misses(self) -> list[tuple[Entry, Classification]]:
        return [(e, c) for e, c in self._scored() if c.verdict != e.label]

    @property
    def unsafe(self) -> list[tuple[Entry, Classification]]:
        """Deterministic messages that would be retried more than once: classified retryable and allowed
        more than one retry by ``triage.decide.retry_cap`` (the same cap the decision applies)."""
        return [(e, c) for e, c in self.results if e.label == "deterministic" and c.verdict in RETRYABLE
                and ((cap := retry_cap(c)) is None or cap > 1)]

    @property
    def retried_once(self) -> list[tuple[Entry, Classification]]:
        """Deterministic messages that would get their one retry (conditional, or transient capped at 1)."""
        return [(e, c) for e, c in self.results if e.label == "deterministic" and c.verdict in RETRYABLE
                and (e, c) not in self.unsafe]

    @property
    def uncapped_conditional(self) -> list[tuple[Entry, Classification]]:
        """Conditional messages recognised as transient but allowed more than one retry."""
        return [(e, c) for e, c in self.results
                if e.label == "conditional" and c.verdict == "transient" and (retry_cap(c) or 99) > 1]


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


def _figures(score: Score, title: str) -> list[str]:
    lines = [f"{title}: {len(score.results)} messages", "  confusion (rows: label, columns: classified as)"]
    lines.append(f"    {'':<14}" + "".join(f"{p:>14}" for p in PREDICTIONS))
    for label in LABELS:
        if any(e.label == label for e, _ in score.results):
            lines.append(f"    {label:<14}" + "".join(f"{score.confusion[(label, p)]:>14}" for p in PREDICTIONS))
    r, hit, n = score.recall(RETRYABLE, RETRYABLE)
    lines.append(f"  transient+conditional recall {r:6.1%} ({hit}/{n})")
    r, hit, n = score.recall(frozenset({"deterministic"}), frozenset({"deterministic"}))
    lines.append(f"  deterministic recall         {r:6.1%} ({hit}/{n})")
    p, hit, n = score.precision(frozenset({"deterministic"}), frozenset({"deterministic"}))
    lines.append(f"  deterministic precision      {p:6.1%} ({hit}/{n})")
    lines.append(f"  unknown                      {score.unknown_share:6.1%}")
    lines.append(f"  deterministic retried more than once: {len(score.unsafe)}; "
                 f"retried once (capped at one retry): {len(score.retried_once)}")
    return lines


def render(score: Score, width: int = 110, *, held_out_misses: bool = False, every: bool = False) -> str:
    """Figures for the whole corpus and each part; misses of the tuning part only, unless asked.

    Held-out misses are hidden by default so that reading them does not turn into tuning on them.
    """
    lines = _figures(score, "all")
    for name in PARTS:
        lines += [""] + _figures(score.part(name), name)
    shown = score if held_out_misses else score.part("tuning")
    if every:  # every entry with its code, rule and the rule's source (--all)
        lines += ["", "every entry" + ("" if held_out_misses else " (tuning part)") + ":"]
        for e, c in shown.results:
            mark = "ok  " if c.verdict == e.label else "MISS"
            lines.append(f"  {mark} {e.id} [{e.adapter}] {e.label} -> {c.verdict}/{c.category} "
                         f"rule={c.rule or '-'} code={c.code or '-'}")
            if c.reference:
                lines.append(f"      source: {c.reference[:width]}")
    misses = shown.misses + [m for m in shown.uncapped_conditional if m not in shown.misses]
    if misses:
        lines += ["", "misses" + ("" if held_out_misses else " (tuning part; --held-out-misses for the rest)") + ":"]
        for e, c in misses:
            got = f"{c.verdict}/{c.category}" + (f" via {c.rule}" if c.rule else "")
            got += f" [{c.code}]" if c.code else ""
            lines.append(f"  {e.id} [{e.adapter}] labelled {e.label}, classified {got}")
            message = " ".join(e.message.split())
            lines.append(f"      {message[:width]}{'…' if len(message) > width else ''}")
            if c.reference:
                lines.append(f"      rule source: {c.reference[:width]}")
    return "\n".join(lines) + "\n"
