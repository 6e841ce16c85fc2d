"""The frame dependency graph (edits depend on their upstreams). networkx stays in this module."""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """A cycle as a closed walk [a, b, a] along the edges' direction, or None."""
    g = nx.DiGraph(edges)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return None
    nodes = [u for u, _ in cycle]
    return [*nodes, nodes[0]]


def build_order(dependencies: dict[str, tuple[str, ...]]) -> list[str]:
    """Every node after all its dependencies; ties keep the declaration order (stable)."""
    g = nx.DiGraph()
    g.add_nodes_from(dependencies)
    g.add_edges_from((up, node) for node, ups in dependencies.items() for up in ups)
    position = {name: i for i, name in enumerate(dependencies)}
    return list(nx.lexicographical_topological_sort(g, key=lambda n: position.get(n, -1)))


def closure(dependencies: dict[str, tuple[str, ...]], selected: Iterable[str]) -> set[str]:
    """The selected nodes plus everything they depend on, transitively."""
    g = nx.DiGraph((up, node) for node, ups in dependencies.items() for up in ups)
    out = set(selected)
    for name in list(out):
        if name in g:
            out |= nx.ancestors(g, name)
    return out


def dependants(dependencies: dict[str, tuple[str, ...]], name: str) -> set[str]:
    """Everything downstream of `name` (what a failure of `name` blocks)."""
    g = nx.DiGraph((up, node) for node, ups in dependencies.items() for up in ups)
    return nx.descendants(g, name) if name in g else set()
