"""Build values from ijson ``basic_parse`` events with a nesting limit, or skip them.

Why not ``ijson.items``: its C builder tracks a dotted prefix for every event, which costs time and,
on absurdly deep input (``[[[[…``), memory quadratic in the depth (a 200,000-deep array took the
process down). ``basic_parse`` events carry no prefix, so the depth is counted here, and anything
nested deeper than the caller's limit stops the read with ``TooDeep`` before it is built. Values the
caller does not need (``compiled_code``, ``timing``) are skipped without building them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ijson

#: The ijson backend in use; ``yajl2_c`` (the C extension) parses about 5× faster than pure Python.
BACKEND: str = ijson.backend

Events = Iterator[tuple[str, Any]]
_STARTS = frozenset({"start_map", "start_array"})
_ENDS = frozenset({"end_map", "end_array"})


class TooDeep(Exception):
    """Arrays/objects nest more than the limit."""


#: True for the event that opens an array or an object (a bound method: no Python frame per call).
is_container = _STARTS.__contains__


def build(events: Events, event: str, value: Any, depth: int, limit: int) -> Any:
    """The value that starts with ``(event, value)``; ``depth`` is the nesting a container opened by
    ``event`` would have (the document's top-level object is 1)."""
    if event not in _STARTS:
        return value
    if depth > limit:
        raise TooDeep
    if event == "start_map":
        obj: dict[str, Any] = {}
        for ev, key in events:
            if ev == "end_map":
                return obj
            ev, val = next(events)
            obj[key] = build(events, ev, val, depth + 1, limit) if ev in _STARTS else val
        raise TooDeep  # unreachable on valid input: the parser raises first on a truncated document
    items: list[Any] = []
    for ev, val in events:
        if ev == "end_array":
            return items
        items.append(build(events, ev, val, depth + 1, limit) if ev in _STARTS else val)
    raise TooDeep  # as above


def skip(events: Events, event: str, depth: int, limit: int) -> None:
    """Consume the value that starts with ``event`` without building it, still enforcing ``limit``."""
    if event not in _STARTS:
        return
    if depth > limit:
        raise TooDeep
    level = depth
    for ev, _ in events:
        if ev in _STARTS:
            level += 1
            if level > limit:
                raise TooDeep
        elif ev in _ENDS:
            level -= 1
            if level < depth:
                return
