"""Who owns a failed dbt node: owner, tags and file path from ``target/manifest.json``.

Slack mentions owners, and the manifest is where dbt writes them. Manifests reach hundreds of MB
(``raw_code``, ``compiled_code``, ``columns``, ``macros``, ``parent_map`` …), so the file is read in
one streaming pass of ijson ``basic_parse`` events and only a handful of short fields per node are
ever built; everything else is skipped event by event without becoming a Python object.
On a 200 MB synthetic manifest ``json.load`` peaks at about 1 GB of Python objects; this reader at
2.5 MB, and takes less time (``bench/manifest_owners.py`` measures both).

Owner resolution, first match wins:

1. ``config.meta.owner`` (where dbt ≥ 1.10 puts meta), then the node's ``meta.owner``;
2. the owner of the node's group (``group`` / ``config.group`` name a group by its short name;
   ``groups.<id>.owner`` is ``{email, name}``: ``name``, else ``email``);
3. for a test (or unit test) with no owner of its own: the owner of the node it tests, by 1–2 —
   ``attached_node`` (dbt ≥ 1.5), else the first model/seed/snapshot/source in ``depends_on.nodes``.

Owner values are strings in the docs but lists and objects in the wild: a list becomes its items
joined with ", ", an object its ``name`` (else ``email``).

Order in the file is not to be relied on: ``groups`` comes after ``nodes``, ``sources`` after the
tests on them, and a test may come before or after the node it tests. So the pass keeps a compact
record (owner, group; about 120 bytes) for every model/seed/snapshot/source that has either, as
long as a requested test has not been met yet — it may test any of them — and only the nodes the
requested tests test after that; everything is resolved at the end.

Why ``basic_parse`` and not ``kvitems``: ``kvitems(f, "nodes")`` is fast (C) but builds every node
whole and serves one section per pass; feeding four ``kvitems`` coroutines (nodes, sources, groups,
unit_tests) from one read was measured 5× slower than this loop on a 300 MB file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from triage.errors import ArtifactError

#: Node types a test can be attached to; their owners are kept for the tests on them.
TESTED_TYPES = frozenset({"model", "seed", "snapshot", "source"})
#: Node types that inherit the owner of the node they test.
TEST_TYPES = frozenset({"test", "unit_test"})
#: Top-level sections whose entries are nodes that may be requested.
NODE_SECTIONS = ("nodes", "sources", "unit_tests")

# What to build of each object; any other key is skipped. ``True`` builds the whole value (all short).
_NODE_FIELDS: dict[str, Any] = {
    "resource_type": True,
    "original_file_path": True,
    "path": True,
    "tags": True,
    "group": True,
    "attached_node": True,
    "meta": {"owner": True},
    "config": {"meta": {"owner": True}, "group": True, "tags": True},
    "depends_on": {"nodes": True},
}
_GROUP_FIELDS: dict[str, Any] = {"name": True, "owner": True}
_METADATA_FIELDS: dict[str, Any] = {"dbt_schema_version": True}

_OPEN = frozenset({"start_map", "start_array"})
_CLOSE = frozenset({"end_map", "end_array"})
_JSON_TYPE = {"start_map": "an object", "start_array": "an array", "string": "a string", "number": "a number",
              "boolean": "a boolean", "null": "null"}

Events = Iterator[tuple[str, Any]]


@dataclass(frozen=True)
class NodeInfo:
    """What Slack needs to know about a node besides its error: who to mention and where it lives."""

    unique_id: str
    owner: str | None
    owner_source: str | None  # "config.meta.owner" | "meta.owner" | "group:<name>" | "attached:<unique_id>" | None
    tags: tuple[str, ...]
    path: str | None  # original_file_path with forward slashes
    group: str | None
    resource_type: str | None


@dataclass(frozen=True, slots=True)
class _Owned:
    """The compact record kept per node: its own owner (and where it came from) and its group."""

    owner: str | None
    source: str | None
    group: str | None


@dataclass(frozen=True)
class _Requested:
    """A requested node as read, before groups and attached nodes (possibly later in the file) are known."""

    owned: _Owned
    tags: tuple[str, ...]
    path: str | None
    resource_type: str | None
    tested: str | None  # for a test: the unique_id of the node it tests


def read_node_info(stream: BinaryIO, unique_ids: Iterable[str], *, max_nodes: int = 2_000_000) -> dict[str, NodeInfo]:
    """Owner, tags and path of the requested nodes, in one streaming pass over a manifest.json.

    ``stream`` is a binary file-like object. Ids the manifest does not hold are absent from the
    result. A single string is taken as one id. ``ArtifactError`` when the bytes are not JSON
    (ijson's message, and where in the manifest), when they are not a dbt manifest (another
    artifact, an array …) or when the sections hold more than ``max_nodes`` entries.
    An empty request returns ``{}`` without reading.
    """
    wanted = {unique_ids} if isinstance(unique_ids, str) else set(unique_ids)
    if not wanted:
        return {}
    return _Reader(wanted, max_nodes).read(stream)


def read_node_info_path(
    path: str | Path, unique_ids: Iterable[str], *, max_nodes: int = 2_000_000
) -> dict[str, NodeInfo]:
    """``read_node_info`` on a file; ``ArtifactError`` when it cannot be opened."""
    try:
        with open(path, "rb") as stream:
            return read_node_info(stream, unique_ids, max_nodes=max_nodes)
    except OSError as exc:
        raise ArtifactError(f"cannot read manifest {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- owner values


def owner_text(value: Any) -> str | None:
    """An owner as one string: a string as is, a list joined with ", ", an object's name (else email)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        parts = [text for text in map(owner_text, value) if text]
        return ", ".join(parts) or None
    if isinstance(value, dict):
        return owner_text(value.get("name")) or owner_text(value.get("email"))
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(tag for tag in value if isinstance(tag, str))
    return ()


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- JSON events


def _skip(events: Events, event: str) -> None:
    """Consume the rest of a value whose first event was ``event``, building nothing."""
    if event not in _OPEN:
        return
    depth = 1
    for event, _ in events:
        if event in _OPEN:
            depth += 1
        elif event in _CLOSE:
            depth -= 1
            if not depth:
                return


def _build(events: Events, event: str, value: Any) -> Any:
    """The Python value whose first event was ``event``; only for values known to be short."""
    if event not in _OPEN:
        return value
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for event, value in events:
        builder.event(event, value)
        if event in _OPEN:
            depth += 1
        elif event in _CLOSE:
            depth -= 1
            if not depth:
                break
    return builder.value


def _pick(events: Events, fields: dict[str, Any]) -> dict[str, Any]:
    """The listed fields of the object whose ``start_map`` was just consumed; the rest is skipped."""
    picked: dict[str, Any] = {}
    for event, key in events:
        if event == "end_map":
            break
        event, value = next(events)
        wanted = fields.get(key)
        if wanted is True:
            picked[key] = _build(events, event, value)
        elif wanted and event == "start_map":
            picked[key] = _pick(events, wanted)
        else:
            _skip(events, event)
    return picked


# --------------------------------------------------------------------------- the pass


class _Reader:
    """One pass over a manifest; ``where`` names the part being read, for error messages."""

    def __init__(self, wanted: set[str], max_nodes: int):
        self.wanted = wanted
        self.max_nodes = max_nodes
        self.requested: dict[str, _Requested] = {}
        self.owned: dict[str, _Owned] = {}  # model/seed/snapshot/source nodes with an owner or a group
        self.group_owners: dict[str, str] = {}  # group short name -> owner
        self.shared: dict[Any, Any] = {}  # one object per distinct owner, group name and _Owned
        # Requested tests not met yet: while there are some, any tested node may be needed later.
        self.unseen_tests = {uid for uid in wanted if uid.split(".", 1)[0] in TEST_TYPES}
        self.tested: set[str] = set()  # the nodes the requested tests met so far test
        self.count = 0
        self.where = "the top level"

    def read(self, stream: BinaryIO) -> dict[str, NodeInfo]:
        try:
            keys = self._top_level(ijson.basic_parse(stream, use_float=True))
        except ijson.JSONError as exc:
            raise ArtifactError(f"manifest.json is not valid JSON (in {self.where}): {_ijson_message(exc)}") from None
        if "nodes" not in keys:
            listed = ", ".join(keys[:10]) + (", …" if len(keys) > 10 else "")
            raise ArtifactError(f"not a dbt manifest: no top-level 'nodes' object (top-level keys: {listed or 'none'})")
        return {uid: self._resolve(uid, node) for uid, node in self.requested.items()}

    def _top_level(self, events: Events) -> list[str]:
        event, _ = next(events)
        if event != "start_map":
            raise _not_an_object("the JSON", event)
        keys: list[str] = []
        for event, key in events:
            if event == "end_map":
                continue  # the top-level object is done; the loop ends at EOF (and catches trailing garbage)
            keys.append(key)
            self.where = repr(key)
            event, value = next(events)
            if key == "metadata" and event == "start_map":
                _check_schema(_pick(events, _METADATA_FIELDS).get("dbt_schema_version"))
            elif key in NODE_SECTIONS:
                self._section(events, key, event)
            elif key == "groups" and event == "start_map":
                self._groups(events)
            else:
                _skip(events, event)
            self.where = "the top level"
        return keys

    def _section(self, events: Events, section: str, event: str) -> None:
        if event == "null" and section != "nodes":
            return  # older dbt writes no unit_tests; null is as good as {}
        if event != "start_map":
            raise _not_an_object(repr(section), event)
        for event, uid in events:
            if event == "end_map":
                return
            self.count += 1
            if self.count > self.max_nodes:
                raise ArtifactError(f"manifest.json has more than max_nodes={self.max_nodes} nodes")
            self.where = f"{section}[{uid!r}]"
            event, _ = next(events)
            if event != "start_map":
                raise _not_an_object(self.where, event)
            self._node(uid, _pick(events, _NODE_FIELDS))

    def _node(self, uid: str, node: dict[str, Any]) -> None:
        config = _dict(node.get("config"))
        resource_type = _text(node.get("resource_type")) or uid.split(".", 1)[0]
        owner, source = owner_text(_dict(config.get("meta")).get("owner")), "config.meta.owner"
        if owner is None:
            owner, source = owner_text(_dict(node.get("meta")).get("owner")), "meta.owner"
        group = _text(node.get("group")) or _text(config.get("group"))
        owned = self._shared(_Owned(self._shared(owner), source if owner else None, self._shared(group)))
        if resource_type in TESTED_TYPES and (owned.owner or owned.group) and (self.unseen_tests or uid in self.tested):
            self.owned[uid] = owned
        if uid in self.wanted:
            tags = node["tags"] if "tags" in node else config.get("tags")
            path = _text(node.get("original_file_path")) or _text(node.get("path"))
            path = path.replace("\\", "/") if path else None
            tested = _tested(node) if resource_type in TEST_TYPES else None
            self.requested[uid] = _Requested(owned, _tags(tags), path, resource_type, tested)
            self._met_test(uid, tested)

    def _met_test(self, uid: str, tested: str | None) -> None:
        """Once every requested test is met, only the nodes they test are worth keeping."""
        if tested:
            self.tested.add(tested)
        if uid in self.unseen_tests:
            self.unseen_tests.remove(uid)
            if not self.unseen_tests:
                self.owned = {key: owned for key, owned in self.owned.items() if key in self.tested}

    def _groups(self, events: Events) -> None:
        for event, gid in events:
            if event == "end_map":
                return
            self.where = f"groups[{gid!r}]"
            event, _ = next(events)
            if event != "start_map":
                _skip(events, event)
                continue
            group = _pick(events, _GROUP_FIELDS)
            name = _text(group.get("name")) or gid.rsplit(".", 1)[-1]
            owner = owner_text(group.get("owner"))
            if owner:
                self.group_owners.setdefault(name, owner)

    def _shared(self, value: Any) -> Any:
        """Owners and groups repeat across thousands of nodes: keep one object per distinct value."""
        return None if value is None else self.shared.setdefault(value, value)

    def _owner_of(self, owned: _Owned) -> tuple[str | None, str | None]:
        if owned.owner:
            return owned.owner, owned.source
        if owned.group and owned.group in self.group_owners:
            return self.group_owners[owned.group], f"group:{owned.group}"
        return None, None

    def _resolve(self, uid: str, node: _Requested) -> NodeInfo:
        owner, source = self._owner_of(node.owned)
        if owner is None and node.tested in self.owned:
            owner, _ = self._owner_of(self.owned[node.tested])
            source = f"attached:{node.tested}" if owner else None
        return NodeInfo(uid, owner, source, node.tags, node.path, node.owned.group, node.resource_type)


def _tested(node: dict[str, Any]) -> str | None:
    """The node a test tests: ``attached_node``, else its first model/seed/snapshot/source dependency."""
    attached = _text(node.get("attached_node"))
    if attached:
        return attached
    depends_on = node.get("depends_on")
    parents = depends_on.get("nodes") if isinstance(depends_on, dict) else None
    for parent in parents if isinstance(parents, list) else ():
        if isinstance(parent, str) and parent.split(".", 1)[0] in TESTED_TYPES:
            return parent
    return None


def _check_schema(schema: Any) -> None:
    """Fail early on another artifact (run_results.json, catalog.json …) handed over by mistake."""
    if isinstance(schema, str) and "/manifest/" not in schema:
        raise ArtifactError(f"not a dbt manifest: metadata.dbt_schema_version is {schema!r}, "
                            "expected https://schemas.getdbt.com/dbt/manifest/vN.json")


def _not_an_object(what: str, event: str) -> ArtifactError:
    return ArtifactError(f"not a dbt manifest: {what} is {_JSON_TYPE.get(event, event)}, expected an object")


def _ijson_message(exc: Exception) -> str:
    """yajl's message on one line: its first line, plus the text it points at when there is some."""
    raw = exc.args[0] if exc.args else str(exc)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) >= 2 and lines[1] and not lines[1].startswith("(right here)"):
        return f"{lines[0]} near {lines[1]!r}"
    return lines[0] if lines else type(exc).__name__
