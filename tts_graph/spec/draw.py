"""Drawing a graph with the graphs nested in it: Mermaid text, or a PNG drawn with matplotlib
(no browser, no network, no graphviz)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph

__all__ = ["Drawing", "draw", "to_mermaid", "to_png"]


@dataclass
class Drawing:
    """A graph's nodes and edges; a node that runs a graph holds that graph's drawing."""

    name: str
    nodes: list[str] = field(default_factory=list)
    edges: list[tuple[str, str, bool]] = field(
        default_factory=list
    )  # (source, target, conditional)
    inner: dict[str, Drawing] = field(default_factory=dict)


def draw(graph: Any, name: str = "graph") -> Drawing:
    """The drawing of ``graph`` (a StateGraph, compiled or not), nested graphs included."""
    compiled = graph.compile() if isinstance(graph, StateGraph) else graph
    shape = compiled.get_graph()
    drawing = Drawing(name)
    for node_id in shape.nodes:
        drawing.nodes.append(node_id)
        runnable = (
            compiled.builder.nodes[node_id].runnable if node_id in compiled.builder.nodes else None
        )
        inner = getattr(runnable, "inner", None)
        if inner is not None and hasattr(inner, "get_graph"):
            drawing.inner[node_id] = draw(inner, node_id)
    drawing.edges = [(e.source, e.target, bool(e.conditional)) for e in shape.edges]
    return drawing


def _mermaid_lines(d: Drawing, prefix: str, indent: str) -> Iterator[str]:
    for node in d.nodes:
        ident = f"{prefix}{node}"
        if node in d.inner:
            yield f'{indent}subgraph {ident}["{node}"]'
            yield from _mermaid_lines(d.inner[node], f"{ident}__", indent + "  ")
            yield f"{indent}end"
        elif node in ("__start__", "__end__"):
            yield f'{indent}{ident}(["{_label(node)}"])'
        else:
            yield f'{indent}{ident}("{node}")'
    for source, target, conditional in d.edges:
        arrow = "-.->" if conditional else "-->"
        yield f"{indent}{prefix}{source} {arrow} {prefix}{target}"


def to_mermaid(graph: Any, name: str = "graph") -> str:
    """Mermaid flowchart text; nested graphs are subgraphs, conditional edges are dotted."""
    return "\n".join(["flowchart TD", *_mermaid_lines(draw(graph, name), "", "  ")]) + "\n"


def to_png(graph: Any, path: str | Path, name: str = "graph") -> Path:
    """A PNG of the graph: nodes in rows by their distance from the start, nested graphs in
    their node's box as a list of their steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = draw(graph, name)
    level = _levels(d)
    rows: dict[int, list[str]] = {}
    for node in d.nodes:
        rows.setdefault(level[node], []).append(node)
    width = max(len(r) for r in rows.values())
    fig, ax = plt.subplots(figsize=(max(4.0, 2.6 * width), 1.3 * len(rows) + 0.6))
    where: dict[str, tuple[float, float]] = {}
    for depth, row in rows.items():
        for i, node in enumerate(row):
            where[node] = ((i + 1) / (len(row) + 1), 1 - (depth + 0.5) / len(rows))
    for source, target, conditional in d.edges:
        ax.annotate(
            "", xy=where[target], xytext=where[source],
            arrowprops={"arrowstyle": "-|>", "linestyle": "--" if conditional else "-",
                        "color": "#555", "shrinkA": 14, "shrinkB": 14},
        )  # fmt: skip
    for node, (x, y) in where.items():
        label = _label(node)
        if node in d.inner:
            steps = [n for n in d.inner[node].nodes if n not in ("__start__", "__end__", "start")]
            label += "\n(" + " → ".join(steps) + ")"
        ax.text(
            x, y, label, ha="center", va="center", fontsize=9,
            bbox={"boxstyle": "round,pad=0.4", "fc": "#bfb6fc" if node in d.inner else "#f2f0ff",
                  "ec": "#555"},
        )  # fmt: skip
    ax.set_axis_off()
    out = Path(path)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def _label(node: str) -> str:
    return {"__start__": "START", "__end__": "END"}.get(node, node)


def _levels(d: Drawing) -> dict[str, int]:
    """Each node's longest distance from the start (the graphs are acyclic)."""
    level = dict.fromkeys(d.nodes, 0)
    for _ in d.nodes:  # relax until stable: at most one pass per node
        changed = False
        for source, target, _conditional in d.edges:
            if level[target] < level[source] + 1:
                level[target] = level[source] + 1
                changed = True
        if not changed:
            break
    return level
