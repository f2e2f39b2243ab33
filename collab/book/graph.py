"""The character graph: one networkx MultiDiGraph built from the pipeline's records, written in several formats.

`graph.json` (networkx node-link data, links under "links") is the contract other tools read; GraphML and GEXF
are flattened copies for Gephi and Cytoscape (they cannot hold lists or dicts); the CSVs are for spreadsheets;
`graph.html` is a self-contained offline viewer and `graph.png` a static overview. Edge keys are relation
names, so a pair can carry several relations and (source, target, relation) is unique.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from string import Template
from typing import Any, Iterable

import networkx as nx

from ..files import atomic_write_bytes, atomic_write_text
from .records import Character, Edge

FORMATS = ("json", "graphml", "gexf", "csv", "html", "png")
ROUTES = ("slm", "llm", "merged")
LAYOUT_SEED = 7
KAMADA_KAWAI_MAX = 80  # above this kamada_kawai gets slow (all-pairs distances); spring_layout scales better

# Fixed colours for the characters schema, so one relation looks the same in every book's graph; other labels
# take the extra colours in name order.
RELATION_COLOURS = {
    "parent_of": "#1f77b4", "sibling_of": "#17becf", "spouse_of": "#9467bd", "relative_of": "#393b79",
    "romantic_partner_of": "#e377c2", "friend_of": "#2ca02c", "enemy_of": "#d62728",
    "acquaintance_of": "#7f7f7f", "employer_of": "#8c564b", "colleague_of": "#bcbd22", "mentor_of": "#ff7f0e",
}
EXTRA_COLOURS = ("#637939", "#843c39", "#5254a3", "#e7969c", "#7b4173", "#8ca252")
NODE_COLOUR = "#f2f2f2"
NARRATOR_COLOUR = "#ffe9a8"


def build_graph(characters: list[Character], edges: list[Edge], meta: dict[str, Any]) -> nx.MultiDiGraph:
    """One node per character (keyed by id) and one edge per Edge; `meta` becomes the graph attributes."""
    graph = nx.MultiDiGraph(**meta)
    for c in characters:
        if c.id in graph:
            raise ValueError(f"character {c.id!r} ({c.name}): duplicate character id")
        graph.add_node(c.id, name=c.name, aliases=list(c.aliases), mentions=c.mentions, gender=c.gender,
                       narrator=c.narrator)
    for e in edges:
        where = f"edge {e.source} -[{e.relation}]-> {e.target}"
        if e.source == e.target:
            raise ValueError(f"{where}: a character cannot be related to itself")
        for end in (e.source, e.target):
            if end not in graph:
                raise ValueError(f"{where}: unknown character id {end!r}")
        # Symmetric edges should already be ordered by id; order them here too so one stated both ways collides.
        source, target = (e.source, e.target) if e.directed else tuple(sorted((e.source, e.target)))
        if graph.has_edge(source, target, key=e.relation):
            raise ValueError(f"{where}: duplicate edge (each pair and relation is stored once)")
        graph.add_edge(source, target, key=e.relation, relation=e.relation, confidence=e.confidence,
                       support=e.support, evidence=[asdict(ev) for ev in e.evidence],
                       routes={r: int(e.routes.get(r, 0)) for r in ROUTES}, directed=e.directed, basis=e.basis)
    return graph


def graph_json(graph: nx.MultiDiGraph) -> dict[str, Any]:
    return nx.node_link_data(graph, edges="links")


def read_graph_json(path: str | Path) -> nx.MultiDiGraph:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return nx.node_link_graph(data, directed=True, multigraph=True, edges="links")
    except (OSError, ValueError, KeyError, TypeError, nx.NetworkXError) as e:
        raise ValueError(f"{path}: not a readable graph.json: {e}".replace("\n", " ")) from None


def write_exports(graph: nx.MultiDiGraph, out_dir: Path, formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Write the requested formats into `out_dir`; returns {format: path} ("csv" gives nodes_csv and edges_csv)."""
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; known: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    positions = _layout(graph) if {"gexf", "html", "png"} & set(formats) else {}
    colours = relation_colours(graph)
    written: dict[str, Path] = {}
    if "json" in formats:
        text = json.dumps(graph_json(graph), indent=1, ensure_ascii=False) + "\n"
        written["json"] = atomic_write_text(out_dir / "graph.json", text)
    if "graphml" in formats:
        buffer = io.BytesIO()
        nx.write_graphml(_flat(graph), buffer)
        written["graphml"] = atomic_write_bytes(out_dir / "graph.graphml", buffer.getvalue())
    if "gexf" in formats:
        buffer = io.BytesIO()
        nx.write_gexf(_with_viz(_flat(graph), positions, colours), buffer)
        written["gexf"] = atomic_write_bytes(out_dir / "graph.gexf", buffer.getvalue())
    if "csv" in formats:
        nodes, edges = _csv(graph)
        written["nodes_csv"] = atomic_write_text(out_dir / "nodes.csv", nodes)
        written["edges_csv"] = atomic_write_text(out_dir / "edges.csv", edges)
    if "html" in formats:
        written["html"] = atomic_write_text(out_dir / "graph.html", render_html(graph, positions, colours))
    if "png" in formats:
        written["png"] = atomic_write_bytes(out_dir / "graph.png", render_png(graph, positions, colours))
    return written


def relation_colours(graph: nx.MultiDiGraph) -> dict[str, str]:
    """Colour per relation present, in legend order (schema colours first, then the rest by name)."""
    present = sorted({d["relation"] for _, _, d in graph.edges(data=True)})
    known = [r for r in RELATION_COLOURS if r in present]
    others = [r for r in present if r not in RELATION_COLOURS]
    colours = {r: RELATION_COLOURS[r] for r in known}
    colours.update((r, EXTRA_COLOURS[i % len(EXTRA_COLOURS)]) for i, r in enumerate(others))
    return colours


def _title(graph: nx.MultiDiGraph) -> str:
    return str(graph.graph.get("title") or graph.graph.get("book") or "Character graph")


# --- flat formats -----------------------------------------------------------------------------------------

def _scalar(value: Any) -> str | int | float | bool:
    return value if isinstance(value, (str, int, float, bool)) else json.dumps(value, ensure_ascii=False)


def _flat(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """A copy whose attributes are all scalars; `label` and `weight` are the names Gephi and Cytoscape look for."""
    flat = nx.MultiDiGraph(**{k: _scalar(v) for k, v in graph.graph.items() if v is not None})
    for node, d in graph.nodes(data=True):
        flat.add_node(node, label=d["name"], name=d["name"], aliases="; ".join(d["aliases"]),
                      mentions=d["mentions"], gender=d["gender"] or "", narrator=bool(d["narrator"]))
    for source, target, key, d in graph.edges(keys=True, data=True):
        flat.add_edge(source, target, key=key, relation=d["relation"], label=d["relation"],
                      weight=d["confidence"], confidence=d["confidence"], support=d["support"],
                      directed=bool(d["directed"]), basis=d["basis"],
                      evidence=json.dumps(d["evidence"], ensure_ascii=False),
                      **{f"route_{r}": int(d["routes"].get(r, 0)) for r in ROUTES})
    return flat


def _with_viz(flat: nx.MultiDiGraph, positions: dict[str, tuple[float, float]],
              colours: dict[str, str]) -> nx.MultiDiGraph:
    """Add GEXF viz data so Gephi opens the graph laid out, sized and coloured as in the HTML view."""
    top = max([d["mentions"] for _, d in flat.nodes(data=True)] + [1])
    for node, d in flat.nodes(data=True):
        x, y = positions[node]
        d["viz"] = {"position": {"x": round(x * 1000, 2), "y": round(-y * 1000, 2), "z": 0.0},
                    "size": round(_radius(d["mentions"], top), 2)}
    for _, _, d in flat.edges(data=True):
        red, green, blue = _rgb(colours[d["relation"]])
        d["viz"] = {"color": {"r": red, "g": green, "b": blue, "a": 1.0},
                    "thickness": round(_width(d["confidence"]), 2)}
    return flat


def _csv(graph: nx.MultiDiGraph) -> tuple[str, str]:
    nodes = io.StringIO()
    writer = csv.writer(nodes, lineterminator="\n")
    writer.writerow(["id", "name", "aliases", "mentions", "gender", "narrator", "degree"])
    for node, d in graph.nodes(data=True):
        writer.writerow([node, d["name"], "; ".join(d["aliases"]), d["mentions"], d["gender"] or "",
                         int(bool(d["narrator"])), graph.degree(node)])
    edges = io.StringIO()
    writer = csv.writer(edges, lineterminator="\n")
    writer.writerow(["source", "target", "source_name", "target_name", "relation", "directed", "confidence",
                     "support", *(f"route_{r}" for r in ROUTES), "basis", "evidence"])
    for source, target, d in graph.edges(data=True):
        writer.writerow([source, target, graph.nodes[source]["name"], graph.nodes[target]["name"], d["relation"],
                         int(bool(d["directed"])), d["confidence"], d["support"],
                         *(d["routes"].get(r, 0) for r in ROUTES), d["basis"],
                         json.dumps(d["evidence"], ensure_ascii=False)])
    return nodes.getvalue(), edges.getvalue()


# --- layout and geometry shared by the HTML and PNG views -------------------------------------------------

def _layout(graph: nx.MultiDiGraph) -> dict[str, tuple[float, float]]:
    """Positions in [0, 1]², y pointing down. Characters without relations go in rows along the bottom:
    left to the force layout they drift to the rim and squash the connected part into the middle."""
    simple = nx.Graph()
    simple.add_nodes_from(graph)
    simple.add_edges_from((u, v) for u, v in graph.edges() if u != v)
    by_mentions = sorted(simple, key=lambda n: (-graph.nodes[n]["mentions"], str(n)))
    linked = [n for n in by_mentions if simple.degree(n)]
    isolated = [n for n in by_mentions if not simple.degree(n)]
    core = simple.subgraph(linked)
    if not linked:
        raw = {}
    elif len(linked) <= KAMADA_KAWAI_MAX and nx.is_connected(core):
        raw = nx.kamada_kawai_layout(core)
    else:
        raw = nx.spring_layout(core, seed=LAYOUT_SEED, k=2 / math.sqrt(len(linked)), iterations=200)
    columns = max(1, math.ceil(math.sqrt(len(isolated) * 4)))
    rows = math.ceil(len(isolated) / columns)
    band = min(0.35, 0.08 * rows) if linked else 1.0
    positions = _fit(raw, 0.0, 1.0 - band if isolated else 1.0)
    for i, node in enumerate(isolated):
        row, column = divmod(i, columns)
        y = 1.0 - band + band * (row + 0.5) / rows if linked else (row + 0.5) / rows
        positions[node] = ((column + 0.5) / columns, y)
    return positions


def _fit(raw: dict[Any, Any], top: float, bottom: float) -> dict[str, tuple[float, float]]:
    if not raw:
        return {}
    xs = [float(p[0]) for p in raw.values()]
    ys = [float(p[1]) for p in raw.values()]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    return {n: ((float(p[0]) - min(xs)) / span_x if span_x else 0.5,
                top + (bottom - top) * ((float(p[1]) - min(ys)) / span_y if span_y else 0.5))
            for n, p in raw.items()}


def _radius(mentions: int, top: int) -> float:
    # Area, not radius, follows mentions, so a character mentioned 4x as often looks 4x as big.
    return 5 + 15 * math.sqrt(max(mentions, 0) / top)


def _width(confidence: float) -> float:
    return 1 + 4 * min(max(confidence, 0.0), 1.0)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _bends(graph: nx.MultiDiGraph, positions: dict[str, tuple[float, float]]) -> dict[tuple[str, str, str], float]:
    """A signed curvature per edge (matplotlib's arc3 `rad`: the control point's sideways offset as a share of
    the edge's length), so several relations between one pair are drawn as separate arcs. Short edges bend
    more, or their arcs would overlap. The sign is taken against the pair's id order, so A→B and B→A bend to
    opposite sides."""
    groups: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for source, target, key in graph.edges(keys=True):
        groups.setdefault(tuple(sorted((source, target))), []).append((source, target, key))
    bends = {}
    for (low, high), members in groups.items():
        distance = math.dist(positions[low], positions[high])
        step = max(0.2, 0.04 / distance) if distance else 0.2
        for i, (source, target, key) in enumerate(sorted(members, key=lambda m: m[2])):
            offset = step * (i - (len(members) - 1) / 2)
            bends[(source, target, key)] = offset if source == low else -offset
    return bends


# --- HTML ---------------------------------------------------------------------------------------------------

WIDTH, HEIGHT = 1000, 700
MARGIN_X, MARGIN_Y = 100, 45  # room for the labels of characters on the rim


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no '<' (so no '</script>' or '<!--'), no '&' or '>' either, and the
    two line separators that older JavaScript parsers reject."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _edge_path(p: tuple[float, float], q: tuple[float, float], r_p: float, r_q: float,
               bend: float) -> str:
    """SVG path from circle p to circle q, bent sideways by `bend` (see `_bends`), trimmed to the circles' rims
    so arrow heads touch the target."""
    (x1, y1), (x2, y2) = p, q
    dx, dy = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 - dy * bend, (y1 + y2) / 2 + dx * bend

    def trim(x: float, y: float, r: float) -> tuple[float, float]:
        ux, uy = cx - x, cy - y
        norm = math.hypot(ux, uy) or 1.0
        return x + ux / norm * r, y + uy / norm * r

    sx, sy = trim(x1, y1, r_p)
    ex, ey = trim(x2, y2, r_q + 2)
    return f"M{sx:.1f},{sy:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}"


def render_html(graph: nx.MultiDiGraph, positions: dict[str, tuple[float, float]] | None = None,
                colours: dict[str, str] | None = None) -> str:
    """The offline viewer: an SVG drawn here (so the graph shows even without scripts), a legend that filters
    by relation, and a side panel that shows a clicked edge's evidence or a clicked character's relations.
    All book text reaches the page escaped: html.escape in markup, `_script_json` in the data block."""
    positions = positions if positions is not None else _layout(graph)
    colours = colours if colours is not None else relation_colours(graph)
    relation_index = {r: i for i, r in enumerate(colours)}
    nodes = list(graph.nodes)
    node_index = {n: i for i, n in enumerate(nodes)}
    top = max([graph.nodes[n]["mentions"] for n in nodes] + [1])
    place = {n: (MARGIN_X + x * (WIDTH - 2 * MARGIN_X), MARGIN_Y + y * (HEIGHT - 2 * MARGIN_Y))
             for n, (x, y) in positions.items()}
    radius = {n: _radius(graph.nodes[n]["mentions"], top) for n in nodes}
    esc = html.escape

    markers = "".join(
        f'<marker id="arrow-{i}" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="9" markerHeight="9" '
        f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for i, colour in enumerate(colours.values()))
    bends = _bends(graph, positions)
    edge_items, edge_svg = [], []
    # Faint edges first, so confident ones are drawn on top.
    ordered = sorted(graph.edges(keys=True, data=True), key=lambda e: e[3]["confidence"])
    for i, (source, target, key, d) in enumerate(ordered):
        path = _edge_path(place[source], place[target], radius[source], radius[target],
                             bends[(source, target, key)])
        rel = relation_index[d["relation"]]
        arrow = f' marker-end="url(#arrow-{rel})"' if d["directed"] else ""
        tip = f'{graph.nodes[source]["name"]} {d["relation"]} {graph.nodes[target]["name"]} ({d["confidence"]:.2f})'
        edge_svg.append(
            f'<g class="edge" data-edge="{i}" data-rel="{rel}"><title>{esc(tip)}</title>'
            f'<path class="hit" d="{path}"/>'
            f'<path class="line" d="{path}" stroke="{colours[d["relation"]]}" '
            f'stroke-width="{_width(d["confidence"]):.2f}"{arrow}/></g>')
        edge_items.append({"source": node_index[source], "target": node_index[target], "relation": d["relation"],
                           "rel": rel, "confidence": d["confidence"], "support": d["support"],
                           "directed": bool(d["directed"]), "routes": d["routes"], "basis": d["basis"],
                           "evidence": d["evidence"]})
    node_svg, node_items = [], []
    for n in nodes:
        d = graph.nodes[n]
        x, y = place[n]
        fill = NARRATOR_COLOUR if d["narrator"] else NODE_COLOUR
        node_svg.append(
            f'<g class="node" data-node="{node_index[n]}" transform="translate({x:.1f},{y:.1f})">'
            f'<title>{esc(d["name"])} ({d["mentions"]} mentions)</title>'
            f'<circle r="{radius[n]:.1f}" fill="{fill}"/>'
            f'<text y="{radius[n] + 12:.1f}">{esc(d["name"])}</text></g>')
        node_items.append({"id": n, "name": d["name"], "aliases": d["aliases"], "mentions": d["mentions"],
                           "gender": d["gender"], "narrator": bool(d["narrator"])})
    legend = "".join(
        f'<label><input type="checkbox" checked data-rel="{i}"><span class="swatch" '
        f'style="background:{colour}"></span>{esc(r)} <small>'
        f'{sum(1 for _, _, e in graph.edges(data=True) if e["relation"] == r)}</small></label>'
        for i, (r, colour) in enumerate(colours.items()))
    data = {"nodes": node_items, "edges": edge_items}
    return _PAGE.substitute(
        title=esc(_title(graph)), markers=markers, edges="".join(edge_svg), nodes="".join(node_svg),
        legend=legend, width=WIDTH, height=HEIGHT, data=_script_json(data),
        summary=esc(f"{graph.number_of_nodes()} characters, {graph.number_of_edges()} relations"))


# The page has no external references (no CDN, fonts or images); `$name` fields are filled by render_html, so
# the script avoids `$` and template literals.
_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #222;
       background: #fff; display: flex; flex-direction: column; height: 100vh; }
header { padding: 8px 14px; border-bottom: 1px solid #ddd; }
header h1 { font-size: 17px; margin: 0 12px 0 0; display: inline; }
#status { color: #666; }
#legend { margin-top: 6px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
#legend label { cursor: pointer; white-space: nowrap; }
#legend small { color: #888; }
.swatch { display: inline-block; width: 14px; height: 4px; margin: 0 5px 3px 3px; vertical-align: middle; }
main { flex: 1; display: flex; min-height: 0; }
#view { flex: 1; min-width: 0; background: #fcfcfc; }
svg { width: 100%; height: 100%; display: block; cursor: grab; user-select: none; }
.edge .hit { stroke: transparent; stroke-width: 12; fill: none; cursor: pointer; }
.edge .line { fill: none; stroke-opacity: 0.85; pointer-events: none; }
.edge.off { display: none; }
.edge.selected .line { stroke-opacity: 1; filter: drop-shadow(0 0 3px #000); }
.dim .edge:not(.lit) { opacity: 0.12; }
.dim .node:not(.lit) { opacity: 0.35; }
.node { cursor: pointer; }
.node circle { stroke: #333; stroke-width: 1.2; }
.node.selected circle { stroke: #000; stroke-width: 3; }
.node text { font-size: 12px; text-anchor: middle; paint-order: stroke; stroke: #fff; stroke-width: 3px;
             stroke-linejoin: round; fill: #111; pointer-events: none; }
#panel { width: 360px; border-left: 1px solid #ddd; padding: 12px 14px; overflow-y: auto; }
#panel h2 { font-size: 16px; margin: 0 0 6px; }
#panel .muted { color: #777; }
#panel ol { padding-left: 20px; }
#panel li { margin-bottom: 8px; }
#panel .chapter { font-weight: 600; color: #555; }
#panel a { color: #1a5fb4; cursor: pointer; text-decoration: underline; }
</style>
</head>
<body>
<header><h1>$title</h1><span id="status">$summary</span>
<div id="legend">$legend</div></header>
<main>
<div id="view"><svg id="graph" viewBox="0 0 $width $height" preserveAspectRatio="xMidYMid meet" role="img">
<defs>$markers</defs>
<g id="edges">$edges</g>
<g id="nodes">$nodes</g>
</svg></div>
<aside id="panel"><p class="muted">Click a relation to see its evidence, or a character to see its relations.
Scroll to zoom, drag to pan.</p></aside>
</main>
<script type="application/json" id="graph-data">$data</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("graph-data").textContent);
  var svg = document.getElementById("graph");
  var panel = document.getElementById("panel");
  var edgeEls = svg.querySelectorAll(".edge");
  var nodeEls = svg.querySelectorAll(".node");

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function clearSelection() {
    svg.classList.remove("dim");
    svg.querySelectorAll(".selected, .lit").forEach(function (e) { e.classList.remove("selected", "lit"); });
  }
  function edgeLine(edge) {
    var arrow = edge.directed ? " \\u2192 " : " \\u2014 ";
    return data.nodes[edge.source].name + arrow + edge.relation + arrow + data.nodes[edge.target].name;
  }
  function link(text, onClick) {
    var a = el("a", text);
    a.addEventListener("click", onClick);
    return a;
  }
  function showEdge(i) {
    var edge = data.edges[i];
    if (!edge) { return; }
    clearSelection();
    edgeEls[i].classList.add("selected");
    panel.replaceChildren();
    panel.appendChild(el("h2", edgeLine(edge)));
    var facts = el("p", null, "muted");
    facts.textContent = "confidence " + edge.confidence.toFixed(2) + " \\u00b7 " + (edge.basis === "names"
      ? "from the names: one family name" : "support " + edge.support + " \\u00b7 routes: slm " +
        (edge.routes.slm || 0) + ", llm " + (edge.routes.llm || 0) + ", merged " + (edge.routes.merged || 0));
    panel.appendChild(facts);
    var who = el("p");
    who.appendChild(link(data.nodes[edge.source].name, function () { showNode(edge.source); }));
    who.appendChild(document.createTextNode(" \\u00b7 "));
    who.appendChild(link(data.nodes[edge.target].name, function () { showNode(edge.target); }));
    panel.appendChild(who);
    panel.appendChild(el("h3", "Evidence (" + edge.evidence.length + ")"));
    var list = el("ol", null, "evidence");
    edge.evidence.forEach(function (ev) {
      var item = el("li");
      item.appendChild(el("span", ev.chapter > 0 ? "Chapter " + ev.chapter : "Front matter", "chapter"));
      item.appendChild(el("span", " (" + Number(ev.confidence).toFixed(2) + "): ", "muted"));
      item.appendChild(el("span", ev.text, "quote"));
      list.appendChild(item);
    });
    panel.appendChild(list);
  }
  function showNode(n) {
    var node = data.nodes[n];
    if (!node) { return; }
    clearSelection();
    svg.classList.add("dim");
    nodeEls[n].classList.add("selected", "lit");
    panel.replaceChildren();
    panel.appendChild(el("h2", node.name));
    var facts = node.mentions + " mentions";
    if (node.gender) { facts += " \\u00b7 gender " + node.gender; }
    if (node.narrator) { facts += " \\u00b7 narrator"; }
    panel.appendChild(el("p", facts, "muted"));
    if (node.aliases.length) { panel.appendChild(el("p", "Also: " + node.aliases.join("; "))); }
    var list = el("ul", null, "relations");
    data.edges.forEach(function (edge, i) {
      if (edge.source !== n && edge.target !== n) { return; }
      edgeEls[i].classList.add("lit");
      nodeEls[edge.source === n ? edge.target : edge.source].classList.add("lit");
      var item = el("li");
      item.appendChild(link(edgeLine(edge), function () { showEdge(i); }));
      item.appendChild(el("span", " (" + edge.confidence.toFixed(2) + ")", "muted"));
      list.insertBefore(item, list.firstChild);  // edges come weakest first; list the strongest first
    });
    panel.appendChild(el("h3", "Relations (" + list.children.length + ")"));
    panel.appendChild(list);
  }

  document.querySelectorAll("#legend input").forEach(function (box) {
    box.addEventListener("change", function () {
      edgeEls.forEach(function (e) {
        if (e.dataset.rel === box.dataset.rel) { e.classList.toggle("off", !box.checked); }
      });
    });
  });

  // Zoom and pan move the viewBox; a drag longer than a few pixels is a pan, not a click.
  var box = svg.viewBox.baseVal, drag = null, moved = false;
  function point(ev) {
    var r = svg.getBoundingClientRect(), s = Math.max(box.width / r.width, box.height / r.height);
    return { x: ev.clientX * s, y: ev.clientY * s, s: s };
  }
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = svg.getBoundingClientRect(), f = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    var px = box.x + (ev.clientX - r.left) / r.width * box.width;
    var py = box.y + (ev.clientY - r.top) / r.height * box.height;
    box.x = px - (px - box.x) * f; box.y = py - (py - box.y) * f;
    box.width *= f; box.height *= f;
  }, { passive: false });
  svg.addEventListener("pointerdown", function (ev) { drag = point(ev); drag.bx = box.x; drag.by = box.y; moved = false; });
  svg.addEventListener("pointermove", function (ev) {
    if (!drag) { return; }
    var p = point(ev);
    if (Math.abs(p.x - drag.x) + Math.abs(p.y - drag.y) > 4 * drag.s) { moved = true; }
    if (moved) { box.x = drag.bx - (p.x - drag.x); box.y = drag.by - (p.y - drag.y); }
  });
  window.addEventListener("pointerup", function () { drag = null; });
  svg.addEventListener("click", function (ev) {
    if (moved) { moved = false; return; }
    var edge = ev.target.closest(".edge"), node = ev.target.closest(".node");
    if (edge) { showEdge(Number(edge.dataset.edge)); }
    else if (node) { showNode(Number(node.dataset.node)); }
    else { clearSelection(); }
  });

  // #edge-3 or #node-0 in the address opens that item, so a view can be linked (and checked headless).
  function fromHash() {
    var m = /^#(edge|node)-(\\d+)$$/.exec(window.location.hash);
    if (m && m[1] === "edge") { showEdge(Number(m[2])); }
    if (m && m[1] === "node") { showNode(Number(m[2])); }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.getElementById("status").textContent =
    data.nodes.length + " characters, " + data.edges.length + " relations";
  document.documentElement.setAttribute("data-ready", "1");
})();
</script>
</body>
</html>
""")


# --- PNG ----------------------------------------------------------------------------------------------------

def render_png(graph: nx.MultiDiGraph, positions: dict[str, tuple[float, float]] | None = None,
               colours: dict[str, str] | None = None) -> bytes:
    """A static overview with the HTML view's layout and colours; sized for about 50 labelled characters."""
    # Figure + Agg canvas directly, not pyplot: no global backend switch and no figure registry to leak into.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch
    import matplotlib.patheffects as effects

    positions = positions if positions is not None else _layout(graph)
    colours = colours if colours is not None else relation_colours(graph)
    figure = Figure(figsize=(14, 10), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.01, 0.01, 0.80, 0.93))
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(1.07, -0.05)  # y points down, as in the HTML view
    ax.axis("off")
    figure.suptitle(f"{_title(graph)}: {graph.number_of_nodes()} characters, {graph.number_of_edges()} relations",
                    x=0.02, ha="left", fontsize=13)
    top = max([d["mentions"] for _, d in graph.nodes(data=True)] + [1])
    # In points: _radius is in HTML view units (1000 wide); this figure's drawing area is about 1200 points wide.
    radius = {n: 0.8 * _radius(d["mentions"], top) for n, d in graph.nodes(data=True)}
    bends = _bends(graph, positions)
    for source, target, key, d in sorted(graph.edges(keys=True, data=True), key=lambda e: e[3]["confidence"]):
        ax.add_patch(FancyArrowPatch(
            positions[source], positions[target], connectionstyle=f"arc3,rad={bends[(source, target, key)]:.3f}",
            arrowstyle="-|>,head_length=6,head_width=3" if d["directed"] else "-", color=colours[d["relation"]],
            linewidth=_width(d["confidence"]) * 0.7, alpha=0.85, shrinkA=radius[source], shrinkB=radius[target] + 1,
            zorder=1))
    nodes = list(graph.nodes)
    ax.scatter([positions[n][0] for n in nodes], [positions[n][1] for n in nodes],
               s=[(2 * radius[n]) ** 2 for n in nodes], edgecolors="#333333", linewidths=0.8, zorder=2,
               c=[NARRATOR_COLOUR if graph.nodes[n]["narrator"] else NODE_COLOUR for n in nodes])
    halo = [effects.withStroke(linewidth=3, foreground="white")]
    for n in nodes:
        x, y = positions[n]
        ax.annotate(graph.nodes[n]["name"], (x, y), xytext=(0, -radius[n] - 2), textcoords="offset points",
                    ha="center", va="top", fontsize=8, zorder=3, path_effects=halo)
    if colours:
        handles = [Line2D([], [], color=c, linewidth=3, label=r) for r, c in colours.items()]
        figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.82, 0.93), frameon=False,
                      title="relation", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
