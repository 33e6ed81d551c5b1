"""The layout of a workflow's stages as a graph, for the pages (an SVG drawn by the template).

A stage's column is the length of the longest chain of links that leads to it, so every link goes
left to right; stages of one column are stacked in workflow order.
"""

from dataclasses import dataclass, field

from . import stages as st

BOX_W, BOX_H = 200, 64
GAP_X, GAP_Y = 90, 28
PAD = 12


@dataclass
class Node:
    id: str
    index: int
    title: str
    subtitle: str
    column: int = 0
    row: int = 0
    state: str = ""
    url: str = ""
    execution: str = ""

    @property
    def x(self):
        return PAD + self.column * (BOX_W + GAP_X)

    @property
    def y(self):
        return PAD + self.row * (BOX_H + GAP_Y)

    @property
    def cx(self):
        return self.x + BOX_W // 2


@dataclass
class Edge:
    source: Node
    target: Node
    label: str
    kind: str

    @property
    def path(self):
        x1, y1 = self.source.x + BOX_W, self.source.y + BOX_H // 2
        x2, y2 = self.target.x, self.target.y + BOX_H // 2
        mid = (x1 + x2) // 2
        return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"

    @property
    def label_x(self):
        return (self.source.x + BOX_W + self.target.x) // 2

    @property
    def label_y(self):
        return (self.source.y + self.target.y + BOX_H) // 2 - 6


@dataclass
class Graph:
    nodes: list
    edges: list = field(default_factory=list)

    @property
    def width(self):
        return max((n.x + BOX_W for n in self.nodes), default=0) + PAD

    @property
    def height(self):
        return max((n.y + BOX_H for n in self.nodes), default=0) + PAD


def layout(stages, names):
    """The graph of `stages` (a workflow's, or an analysis's); `names` maps executable IDs to names."""
    nodes = []
    by_id = {}
    links = []
    for index, stage in enumerate(stages):
        executable = names.get(stage["executable"], stage["executable"])
        node = Node(stage["id"], index, stage.get("name") or executable, executable)
        for name, value in stage.get("input", {}).items():
            for target, kind, source_field in st.links_of(value):
                if target in by_id:
                    links.append((by_id[target], node, f"{source_field} → {name}", kind))
        node.column = max((src.column + 1 for src, dst, _, kind in links if dst is node), default=0)
        by_id[stage["id"]] = node
        nodes.append(node)
    rows = {}
    for node in nodes:
        node.row = rows.get(node.column, 0)
        rows[node.column] = node.row + 1
    return Graph(nodes, [Edge(src, dst, label, kind) for src, dst, label, kind in links])
