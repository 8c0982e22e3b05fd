"""The one YAML loader of agentic: safe, strict about duplicate keys, bounded in size.

Catalog files and ``agentic replay --set`` values are read with :func:`load_yaml`, which

* constructs plain data only (a :class:`yaml.SafeLoader`: no tag runs code);
* refuses a key given twice in one mapping (PyYAML would silently keep the last one,
  hiding a typo);
* refuses a document that, with its aliases expanded, has more than
  :data:`MAX_EXPANDED_NODES` nodes;
* refuses lists and mappings nested more than :data:`MAX_DEPTH` levels deep: PyYAML
  composes recursively, and a few hundred ``[`` would end in a ``RecursionError`` (a
  traceback instead of a message naming the file and line).

The last one is the "billion laughs" defence. PyYAML builds an alias as a reference to the
anchored object, so loading a few hundred bytes of nested aliases is cheap, but everything
that walks the result later (pydantic validation, ``model_dump``, JSON) expands every
reference: nine levels of nine aliases are 9**9 (387 million) nodes. The expanded size is
counted on the composed node graph before anything is constructed, once per node
(memoized), so the check costs no more than the document's own size. A reference cycle
(``&a [*a]``) has no finite expansion and is refused too.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_EXPANDED_NODES = 100_000
"""The most nodes (scalars, lists and mappings, keys included) a document may expand to.

A large workflow file has a few thousand; an alias bomb has hundreds of millions."""

MAX_DEPTH = 100
"""The deepest nesting of lists and mappings; a workflow file nests fewer than ten levels."""


class YAMLTooLargeError(yaml.constructor.ConstructorError):
    """A document too big to load safely: too many nodes expanded, a cycle, or too deep."""


class StrictSafeLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys and documents too big to load safely."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            message = f"YAML nests lists and mappings more than {MAX_DEPTH} levels deep"
            raise YAMLTooLargeError(None, None, message, mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _ExpandedSize(MAX_EXPANDED_NODES).of(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key_node.value!r} appears twice", key_node.start_mark
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """One YAML document as plain data (see the module docstring for what is refused).

    Raises:
        YAMLTooLargeError: more than :data:`MAX_EXPANDED_NODES` nodes once aliases are
            expanded, an alias inside its own anchor, or nesting deeper than
            :data:`MAX_DEPTH` (the problem mark names the line).
        yaml.YAMLError: malformed YAML or a duplicate key (a ``MarkedYAMLError`` names the line).
    """
    return yaml.load(text, Loader=StrictSafeLoader)  # a SafeLoader subclass: no tags run


class _ExpandedSize:
    """How many nodes a composed node expands to, each distinct node counted once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: dict[int, int] = {}  # id(node) -> expanded size; nodes outlive the check
        self.open: set[int] = set()  # the nodes being counted: the current node's ancestors

    def of(self, node: yaml.Node) -> int:
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.open:
            raise YAMLTooLargeError(
                None, None, "a YAML alias refers to a node that contains it", node.start_mark
            )
        self.open.add(key)
        size = 1 + sum(self.of(child) for child in _children(node))
        self.open.discard(key)
        if size > self.limit:
            # The innermost node over the limit: its line is where the expansion explodes.
            message = f"YAML expands to more than {self.limit} nodes once its aliases are expanded"
            raise YAMLTooLargeError(None, None, message, node.start_mark)
        self.sizes[key] = size
        return size


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
