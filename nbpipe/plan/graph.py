"""The frame dependency graph (edits depend on their upstreams). networkx stays in this module.

A graph without an edge (a project with no edit chain: most of them) is answered without
networkx, which is then never imported: its import is 0.15 s of every build's start-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import ModuleType

from nbpipe.plan.frame import Frame


def _nx() -> ModuleType:
    """networkx, imported on the first graph that has an edge (see the module docstring)."""
    import networkx  # type: ignore[import-untyped]  # no stubs: types-networkx is no dependency

    module: ModuleType = networkx
    return module


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """A cycle as a closed walk [a, b, a] along the edges' direction, or None."""
    pairs = list(edges)
    if not pairs:
        return None
    nx = _nx()
    g = nx.DiGraph(pairs)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return None
    nodes = [u for u, _ in cycle]
    return [*nodes, nodes[0]]


def build_order(dependencies: dict[str, tuple[str, ...]]) -> list[str]:
    """Every node after all its dependencies; ties keep the declaration order (stable)."""
    if not any(dependencies.values()):
        return list(dependencies)
    nx = _nx()
    g = nx.DiGraph()
    g.add_nodes_from(dependencies)
    g.add_edges_from((up, node) for node, ups in dependencies.items() for up in ups)
    position = {name: i for i, name in enumerate(dependencies)}
    return list(nx.lexicographical_topological_sort(g, key=lambda n: position.get(n, -1)))


def closure(dependencies: dict[str, tuple[str, ...]], selected: Iterable[str]) -> set[str]:
    """The selected nodes plus everything they depend on, transitively."""
    if not any(dependencies.values()):
        return set(selected)
    nx = _nx()
    g = nx.DiGraph((up, node) for node, ups in dependencies.items() for up in ups)
    out = set(selected)
    for name in list(out):
        if name in g:
            out |= nx.ancestors(g, name)
    return out


def dependants(dependencies: dict[str, tuple[str, ...]], of: Iterable[str]) -> set[str]:
    """Every node that depends on one of `of`, transitively (an edit of an edit of it)."""
    if not any(dependencies.values()):
        return set()
    nx = _nx()
    g = nx.DiGraph((up, node) for node, ups in dependencies.items() for up in ups)
    out: set[str] = set()
    for name in of:
        if name in g:
            out |= nx.descendants(g, name)
    return out


def components(nodes: Iterable[str], links: Iterable[tuple[str, str]]) -> list[set[str]]:
    """The nodes in groups joined by links, either way round (a directed graph's weakly
    connected components); a node with no link is a group of its own."""
    pairs = list(links)
    if not pairs:
        return [{node} for node in dict.fromkeys(nodes)]
    nx = _nx()
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from(pairs)
    return [set(group) for group in nx.connected_components(g)]


def render_graph(frames: Mapping[str, Frame], fmt: str) -> str:
    """The frame graph as Mermaid or Graphviz DOT: frames, input files, and edit edges."""
    ids: dict[str, str] = {}

    def node(name: str) -> str:
        return ids.setdefault(name, f"n{len(ids)}")

    lines = ["flowchart LR"] if fmt == "mermaid" else ["digraph nbpipe {", "  rankdir=LR;"]
    def quote(text: str) -> str:
        return text.replace('"', "#quot;") if fmt == "mermaid" else text.replace('"', '\\"')

    for name, frame in frames.items():
        label = quote(f"{name}<br/>{frame.model}" if fmt == "mermaid"
                      else f"{name}\\n{frame.model}")
        lines.append(f'  {node(name)}["{label}"]' if fmt == "mermaid"
                     else f'  {node(name)} [label="{label}", shape=box];')
        for image in frame.inputs:
            source = image.ref if image.kind == "frame" else f"{image.kind}:{image.ref}"
            if image.kind != "frame" and source not in ids:  # a file or a URL: a leaf node
                lines.append(f'  {node(source)}[("{quote(image.ref)}")]' if fmt == "mermaid"
                             else f'  {node(source)} [label="{quote(image.ref)}", shape=note];')
            arrow = "-->" if fmt == "mermaid" else "->"
            end = "" if fmt == "mermaid" else ";"
            lines.append(f"  {node(source)} {arrow} {node(name)}{end}")
    if fmt == "dot":
        lines.append("}")
    return "\n".join(lines)
