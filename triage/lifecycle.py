"""The state model: a triage's lifecycle and a chain's story, as typed states whose moves are checked.

A **triage** is the work done for one accepted webhook delivery. RQ runs every job at least once and
workers die, so a triage may be *attempted* several times; its status says how far it got::

    received ─▶ queued ─▶ triaging ─┬─▶ waiting ──▶ (queued again by RQ's scheduler: re-check)
                  ▲                 ├─▶ deciding ─┬─▶ retry_scheduled ─▶ retried ─▶ notified ─▶ done
                  │                 │             └─▶ notified ─▶ done
                  │                 └─▶ done       (nothing to do: started event, success, duplicate run)
                  └── failed ◀── any non-final state (an attempt died or raised; RQ tries it again)
                      dead_letter ◀── any non-final state (no attempt left: "Could not triage run N")
                      waiting | retry_scheduled ─▶ canceled (an operator)

``done``, ``dead_letter`` and ``canceled`` are final. ``failed`` is not: a new attempt (RQ's retry of
the job, an abandoned job found by RQ's cleanup, or a redelivery of the webhook) moves it back to
``queued``. A move the table does not allow raises :class:`IllegalTransition`.

A **story** is what Slack is told about one original failed run and its retries (``Store.story``)::

    open ─┬─▶ retrying ─┬─▶ recovered
          │             ├─▶ gave_up          (budget spent, or failed the same way again)
          │             └─▶ needs_human      (the retry's outcome cannot be known)
          └─▶ not_retried | needs_human

A story's status may go from ``retrying`` back to ``retrying`` (the next attempt of the chain).
"""

from __future__ import annotations

from triage.enums import TextEnum


class IllegalTransition(ValueError):
    """A state change the model does not allow: a bug, or a stale job acting on a newer state."""


class _States(TextEnum):
    """A state whose moves are listed in ``_MOVES_OF[its class]``."""

    def can_move_to(self, other: _States) -> bool:
        return other in _MOVES_OF[type(self)][self]

    def move_to(self, other: _States) -> _States:
        """``other``, if the model allows the move; else IllegalTransition."""
        if not self.can_move_to(other):
            raise IllegalTransition(f"{_NAMES[type(self)]} cannot go from {self.value} to {other.value}")
        return other


class TriageStatus(_States):
    RECEIVED = "received"
    QUEUED = "queued"
    TRIAGING = "triaging"
    WAITING = "waiting"
    DECIDING = "deciding"
    RETRY_SCHEDULED = "retry_scheduled"
    RETRIED = "retried"
    NOTIFIED = "notified"
    DONE = "done"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in _FINAL_TRIAGE


_T = TriageStatus
_FINAL_TRIAGE = frozenset({_T.DONE, _T.DEAD_LETTER, _T.CANCELED})
_MOVES: dict[TriageStatus, frozenset[TriageStatus]] = {
    _T.RECEIVED: frozenset({_T.QUEUED, _T.FAILED}),
    _T.QUEUED: frozenset({_T.TRIAGING, _T.FAILED, _T.CANCELED, _T.QUEUED}),
    _T.TRIAGING: frozenset({_T.WAITING, _T.DECIDING, _T.DONE, _T.FAILED, _T.TRIAGING}),
    _T.WAITING: frozenset({_T.QUEUED, _T.TRIAGING, _T.FAILED, _T.CANCELED}),
    _T.DECIDING: frozenset({_T.RETRY_SCHEDULED, _T.NOTIFIED, _T.DONE, _T.FAILED, _T.TRIAGING}),
    _T.RETRY_SCHEDULED: frozenset({_T.RETRIED, _T.NOTIFIED, _T.DONE, _T.FAILED, _T.CANCELED}),
    _T.RETRIED: frozenset({_T.NOTIFIED, _T.DONE, _T.FAILED}),
    _T.NOTIFIED: frozenset({_T.DONE, _T.RETRIED, _T.FAILED}),
    _T.FAILED: frozenset({_T.QUEUED, _T.TRIAGING, _T.DEAD_LETTER, _T.FAILED}),
    _T.DONE: frozenset(),
    _T.DEAD_LETTER: frozenset({_T.QUEUED}),  # an operator's replay, or a redelivery of the webhook
    _T.CANCELED: frozenset(),
}
# An attempt can fail, and the last one be dead-lettered, from wherever it had got to.
_TRIAGE_MOVES = {state: moves | ({_T.FAILED, _T.DEAD_LETTER} if state not in _FINAL_TRIAGE else frozenset())
                 for state, moves in _MOVES.items()}


class StoryStatus(_States):
    OPEN = "open"
    RETRYING = "retrying"
    RECOVERED = "recovered"
    GAVE_UP = "gave_up"
    NOT_RETRIED = "not_retried"
    NEEDS_HUMAN = "needs_human"

    @property
    def final(self) -> bool:
        return not _STORY_MOVES[self]


_S = StoryStatus
_STORY_MOVES: dict[StoryStatus, frozenset[StoryStatus]] = {
    _S.OPEN: frozenset({_S.RETRYING, _S.NOT_RETRIED, _S.NEEDS_HUMAN, _S.GAVE_UP, _S.RECOVERED}),
    _S.RETRYING: frozenset({_S.RETRYING, _S.RECOVERED, _S.GAVE_UP, _S.NEEDS_HUMAN}),
    _S.RECOVERED: frozenset(),
    _S.GAVE_UP: frozenset(),
    _S.NOT_RETRIED: frozenset(),
    _S.NEEDS_HUMAN: frozenset(),
}

_MOVES_OF = {TriageStatus: _TRIAGE_MOVES, StoryStatus: _STORY_MOVES}
_NAMES = {TriageStatus: "triage", StoryStatus: "story"}
