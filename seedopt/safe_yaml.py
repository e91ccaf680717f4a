"""YAML text read safely: the reader of every config, case and variants file.

On top of ``yaml.SafeLoader``:

* the file is UTF-8 (a byte-order mark is accepted) and at most ``MAX_YAML_BYTES``;
* a mapping that repeats a key is refused, naming the key and its line (YAML itself would
  keep the last value silently);
* aliases are counted as they would expand: a document whose expansion would exceed
  ``MAX_YAML_NODES`` nodes (a "billion laughs" alias bomb), or which refers to itself, is
  refused after composing the node graph (linear in the file's size) and before anything
  is expanded or constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import SeedoptError

MAX_YAML_BYTES = 4 * 2**20
"""Largest YAML file read, bytes."""
MAX_YAML_NODES = 200_000
"""Most nodes a document may hold once its aliases are expanded."""


class _Refused(Exception):
    """A document refused by the checks above (message without the file name)."""


class _CheckedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """``SafeLoader`` (LibYAML's parser where installed) that refuses repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first is not None:
                raise _Refused(f"line {line}: duplicate key {key!r} (first given on line {first})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def expanded_nodes(root: yaml.Node, limit: int = MAX_YAML_NODES) -> int:
    """Nodes in the document ``root`` with every alias expanded, counted without expanding
    (each shared node once, memoised); raises ``_Refused`` above ``limit`` or on a cycle."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > limit:
                raise _Refused(
                    f"expands to more than {limit} nodes through its aliases (an alias bomb?)"
                )
            continue
        if key in open_nodes:
            raise _Refused(f"line {node.start_mark.line + 1}: an alias refers to itself")
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise _Refused(f"line {child.start_mark.line + 1}: an alias refers to itself")
            stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml_text(text: str) -> Any:
    """The one document of ``text`` (None when empty), checked as described above; raises
    ``yaml.YAMLError`` for bad syntax and ``ValueError`` for a refused document."""
    loader = _CheckedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        expanded_nodes(root)
        return loader.construct_document(root)
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path, what: str = "config") -> Any:
    """The document of the YAML file ``path``, or a one-line ``SeedoptError`` naming it."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise SeedoptError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise SeedoptError(
            f"{path}: larger than {MAX_YAML_BYTES // 2**20} MiB; a {what} is a short YAML file"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedoptError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        return load_yaml_text(text)
    except yaml.YAMLError as exc:
        raise SeedoptError(f"{path}: not valid YAML ({_first_line(exc)})") from None
    except ValueError as exc:
        raise SeedoptError(f"{path}: {exc}") from None


def _first_line(exc: yaml.YAMLError) -> str:
    text = " ".join(str(exc).split("\n")[:1]).strip()
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        text = f"{getattr(exc, 'problem', None) or text}, line {mark.line + 1}"
    return text
