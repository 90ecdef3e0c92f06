"""``TextEnum``: the base of every enum whose values are words written to Redis, JSON and logs.

A ``str`` mixin makes its members compare and serialise as their values; ``__str__`` returning the
value (as ``enum.StrEnum`` does from Python 3.11, which this package does not require) makes f-strings
and ``str()`` give ``"done"``, not ``"TriageStatus.DONE"``.
"""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    def __str__(self) -> str:
        return self.value
