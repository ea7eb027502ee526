"""Reading YAML safely: bounded in size, depth and alias expansion, strict about keys.

Every YAML pcgraph reads (topologies, ``--config`` files) goes through :func:`load_yaml`, which
turns each way YAML can go wrong into one :class:`~pcgraph.errors.SpecError` that names the
source and the line:

- the input is bounded: at most :data:`MAX_BYTES` bytes, nesting at most :data:`MAX_DEPTH`
  levels, and at most :data:`MAX_NODES` values once aliases are expanded (a few hundred bytes of
  nested ``&a [*b, *b, …]`` aliases — "billion laughs" — would otherwise expand to billions);
- a key given twice in one mapping is an error naming both lines (YAML keeps the last one
  silently, so a second ``edges:`` block would drop the first block's edges);
- only the safe tags are constructed (no Python objects);
- bare words that YAML 1.1 reads as booleans (``off``, ``no``, ``yes``, ``on``) are reported where
  a string was expected, with the hint to quote them (:func:`bool_hint`);
- numbers in exponent form without a dot (``1e-3``, ``2E+5``), which YAML 1.1 reads as strings,
  are numbers, as in YAML 1.2 (quote one to keep it a string);
- merge keys (``<<: *defaults``) copy the keys of the mapping they name; keys written beside
  them override the merged ones.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from pcgraph.errors import SpecError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Lines", "bool_hint", "load_yaml"]

MAX_BYTES = 4 * 1024 * 1024  # far above any real topology (the largest shipped is ~3 KB)
MAX_DEPTH = 64  # a topology nests 4 levels (graph → nodes → node → shape list)
MAX_NODES = 1_000_000  # values after alias expansion


_TAG_FLOAT = "tag:yaml.org,2002:float"
_TAG_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """The safe loader that refuses duplicate keys and records nothing else."""


class _CLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same on libyaml's parser (≈10× faster on large files), where PyYAML has it."""


_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _flow_depth(text: str) -> int:
    """An upper bound of the bracket nesting ([ and {, quotes and comments not excluded):
    libyaml recurses in C, so deeply nested flow text goes to the Python parser, whose
    RecursionError is caught, instead of overflowing the C stack."""
    depth = deepest = 0
    for ch in _NOT_BRACKET.sub("", text):  # C-speed filter: block-style YAML has few brackets
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _duplicate_key(key: Any, first: int, key_node: yaml.Node) -> yaml.YAMLError:
    """The error of a key given twice in one mapping (YAML would keep only the last value)."""
    return yaml.constructor.ConstructorError(
        None,
        None,
        f"duplicate key {key!r} (first on line {first}, again on line "
        f"{key_node.start_mark.line + 1}); YAML would keep only the last one — merge them into one",
        key_node.start_mark,
    )


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _TAG_MERGE:  # merged keys may be overridden: not duplicates
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: SafeLoader reports it below
            continue
        if first is not None:
            raise _duplicate_key(key, first, key_node)
        seen[key] = key_node.start_mark.line + 1
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


# YAML 1.2's float form: YAML 1.1 (PyYAML) wants a dot, so that 1e-3 would be the string '1e-3'
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")

for _cls in (_Loader, _CLoader):
    _cls.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _cls.add_implicit_resolver(_TAG_FLOAT, _EXPONENT_FLOAT, list("-+.0123456789"))


def _too_deep(node: yaml.Node, source: str) -> SpecError:
    return SpecError(
        f"{source}: line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep; "
        "a topology needs 4 (graph → nodes → node → shape)"
    )


def _check_depth(root: yaml.Node, source: str) -> None:
    """Bound the nesting depth of a node tree without aliases (one pass, no bookkeeping)."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        value = node.value
        if isinstance(value, list):  # a sequence or a mapping (scalars hold a str)
            if depth >= MAX_DEPTH:
                raise _too_deep(node, source)
            for item in value:
                if isinstance(item, tuple):  # a mapping's (key, value) pair
                    push((item[0], depth + 1))
                    push((item[1], depth + 1))
                else:
                    push((item, depth + 1))


def _check_node_graph(root: yaml.Node, source: str) -> None:
    """Bound the depth and the expanded size of the composed node graph before constructing
    it. Aliases make the graph a DAG: sizes are counted once per node (memoized), so this is
    linear in the text even when the expansion is exponential."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(node, source)
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            size[id(node)] = 1
            continue
        if done:
            total = 1 + sum(size[id(c)] for c in children)
            if total > MAX_NODES:
                raise SpecError(
                    f"{source}: line {node.start_mark.line + 1}: expands to more than "
                    f"{MAX_NODES:,} values (aliases *name repeat what &name marks); write the "
                    "values out or use fewer aliases"
                )
            size[id(node)] = total
            continue
        if id(node) in size:
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in size)


Lines = dict[tuple[object, ...], int]


def _record_lines(root: yaml.Node, lines: Lines, max_depth: int = 4) -> None:
    """The 1-based line of each value down to ``max_depth`` levels, keyed by its path
    (``("nodes", 2, "shape")``); a node reached again through an alias is not walked again."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[object, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if len(path) >= max_depth or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines.setdefault((*path, key.value), key.start_mark.line + 1)
                    stack.append((value, (*path, key.value)))


_TAG = "tag:yaml.org,2002:"
_SCALARS = {
    _TAG + "str": None,  # the value itself
    _TAG + "int": "construct_yaml_int",
    _TAG + "float": "construct_yaml_float",
    _TAG + "bool": "construct_yaml_bool",
    _TAG + "null": "construct_yaml_null",
}
_SEQ, _MAP = _TAG + "seq", _TAG + "map"


class _Unusual(Exception):
    """A tag or key outside plain data (merge keys, timestamps, sets, complex keys): the
    general constructor takes the document instead."""


def _plain(loader: Any, root: yaml.Node) -> Any:
    """The Python value of a composed tree of plain data (str, int, float, bool, null, lists,
    string-keyed mappings), ≈2× faster than PyYAML's general constructor; duplicate keys are
    refused as by :func:`_construct_mapping`. Raises _Unusual for anything else."""
    memo: dict[int, Any] = {}  # a node reached again through an alias is the same object

    def build(node: yaml.Node) -> Any:
        found = memo.get(id(node), memo)
        if found is not memo:
            return found
        tag = node.tag
        if isinstance(node, yaml.ScalarNode):
            if tag not in _SCALARS:
                raise _Unusual
            method = _SCALARS[tag]
            value = node.value if method is None else getattr(loader, method)(node)
        elif tag == _SEQ:
            value = []
            memo[id(node)] = value
            value.extend(build(item) for item in node.value)
        elif tag == _MAP:
            value = {}
            memo[id(node)] = value
            lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _TAG_MERGE:
                    raise _Unusual
                key = build(key_node)
                if key in lines:
                    raise _duplicate_key(key, lines[key], key_node)
                lines[key] = key_node.start_mark.line + 1
                value[key] = build(value_node)
        else:
            raise _Unusual
        memo[id(node)] = value
        return value

    return build(root)


def load_yaml(text: str | bytes, source: str, *, lines: Lines | None = None) -> Any:
    """Parse YAML ``text`` (from ``source``, named in errors) into plain Python values.

    ``lines``, when given, is filled with the line of each value by its path (see
    :func:`_record_lines`), so that a later schema error can name the line too.

    Raises:
        SpecError: too large, too deep, too many values after aliases, a duplicate key, an
            unsafe tag, or a syntax error — with the line where YAML reports one.
    """
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > MAX_BYTES:
        raise SpecError(
            f"{source}: {size:,} bytes, more than the {MAX_BYTES:,} a YAML input may have; is "
            "this the right file? (topologies are a few KB)"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"{source}: not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML"
            ) from None
    loader = (_CLoader if _flow_depth(text) <= MAX_DEPTH else _Loader)(text)
    try:
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            if "&" in text:  # anchors: aliases may expand it
                _check_node_graph(root, source)
            else:  # without them it is as big as it looks: only the depth to bound
                _check_depth(root, source)
            if lines is not None:
                _record_lines(root, lines)
            try:
                return _plain(loader, root)
            except _Unusual:
                return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "could not determine a constructor" in str(exc):
            problem = f"{problem}; only plain YAML values are allowed (no !tags)"
        syntax = isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError)
        kind = "YAML syntax error" if syntax else "YAML error"
        raise SpecError(f"{source}:{where} {kind}: {problem}") from None
    except RecursionError:  # deep block nesting without anchors lands here, unbounded
        raise SpecError(
            f"{source}: nested too deeply to parse (more than {MAX_DEPTH} levels); a topology "
            "needs 4"
        ) from None


def bool_hint(value: object) -> str:
    """The hint for a boolean where a string was expected (YAML read a bare yes/no/on/off)."""
    if isinstance(value, bool):
        return (
            f" (YAML read a bare word as the boolean {str(value).lower()}: "
            "unquoted yes/no/on/off/y/n/true/false are booleans in YAML; quote it, "
            "e.g. name: 'off')"
        )
    return ""
