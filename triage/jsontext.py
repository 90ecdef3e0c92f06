"""Small helpers for JSON text that comes from outside (webhook bodies, artifacts, logs).

They live apart from the readers that use them because the webhook, the run_results reader, the
dbt log reader and the Slack renderer all need them, and none of those should import another.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_JSON_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS_RE = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def scalar_text(text: str) -> str:
    """``text`` with every lone surrogate (``"\\ud800"`` in JSON decodes to one) replaced by U+FFFD,
    so that it can be encoded as UTF-8: for Redis keys, the store and Slack. (ASCII text, nearly all of
    it, is returned at once: ``isascii`` reads a flag, the regular expression reads every character.)"""
    return text if text.isascii() else _SURROGATE_RE.sub("\ufffd", text)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def json_nesting_exceeds(text: str, limit: int) -> bool:
    """True when the JSON ``text`` nests arrays/objects more than ``limit`` deep.

    A linear scan without recursion, at C speed (regular expressions, ``accumulate``): string
    literals are removed first (brackets inside strings do not count), then everything but
    brackets; the deepest running sum of ``+1`` per opening and ``-1`` per closing bracket is the
    nesting depth. Meant to run before ``json.loads``; for text that is not valid JSON the answer
    is approximate (the parser then says what is wrong with it).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS_RE.sub("", _JSON_STRING_RE.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit
