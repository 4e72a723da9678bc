"""The YAML boundary of every settings file (the daemon config, training recipes).

`parse_yaml` turns text into plain values through yaml.SafeLoader, refusing what no settings
file needs and what could exhaust the daemon: duplicate keys, nesting deeper than MAX_DEPTH,
more than MAX_NODES values once aliases are expanded ("billion laughs"), recursive aliases.
Every failure is one line naming the file (callers read at most their own byte limit first).
"""

from __future__ import annotations

from typing import Any

import yaml

from edge_fer.core.schema import shown

MAX_DEPTH = 32  # mappings and lists nested deeper than this are not a settings file
MAX_NODES = 10_000  # values after expanding YAML aliases (refuses "billion laughs")


class YamlRefused(ValueError):
    """A document that is not a settings file; the message names it and why."""


class _Refused(Exception):
    """Raised inside the YAML loader: the document is refused (the message says why)."""


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nests values deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise _Refused(
                        f"has the key {shown(key_node.value)} twice in one mapping "
                        f"(line {key_node.start_mark.line + 1}); keep one"
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds once aliases are expanded (a node counts once per
    reference); _Refused past MAX_NODES or when a value contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            active.discard(id(node))
            sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), MAX_NODES + 1)
            continue
        if id(node) in sizes:
            continue
        active.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise _Refused("holds a value that contains itself (a recursive YAML alias)")
            if id(child) not in sizes:
                stack.append((child, False))
    if sizes[id(root)] > MAX_NODES:
        raise _Refused(f"expands to more than {MAX_NODES} values (YAML aliases)")
    return sizes[id(root)]


def parse_yaml(text: str, where: str, error: type[ValueError] = YamlRefused) -> Any:
    """The YAML document in `text` (None when empty); every failure is an `error` whose
    one-line message starts with `where`."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # its reader already refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise error(f"{where} {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise error(f"{where} is not valid YAML{at}; fix its syntax") from None
    except RecursionError:
        raise error(f"{where} nests values too deeply to be a config") from None
    except Exception as exc:  # noqa: BLE001 - e.g. an integer past Python's digit limit
        raise error(f"{where} holds a value YAML cannot build ({shown(str(exc))}); fix it") from None
    finally:
        if loader is not None:
            loader.dispose()
