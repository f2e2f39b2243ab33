from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import networkx as nx
import pytest

from collab.book.graph import (FORMATS, RELATION_COLOURS, build_graph, read_graph_json, relation_colours,
                               write_exports)
from collab.book.records import Character, Edge, Evidence

NASTY = 'He said "</script><script>document.title=\'pwned\'</script>" & <b>left</b>'
# If the side panel ever used innerHTML, this would set an attribute on <html> when the edge is shown.
INJECT = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\"> tea & 'cake'"
CAROL = 'Carol "Cat" <b>&amp; Co</b>'


def characters() -> list[Character]:
    return [Character("alice", "Alice Smith", ["Ally", "Miss Smith"], 40, "f", True),
            Character("bob", "Bob Jones", [], 25, "m"),
            Character("carol", CAROL, ["</script>"], 9),
            Character("dave", "Dave", [], 1)]  # no relations: must still be a node everywhere


def edges() -> list[Edge]:
    return [
        Edge("alice", "bob", "spouse_of", 0.9, 4, [Evidence(NASTY, 2, 10, 60, 0.95)],
             {"slm": 3, "llm": 1, "merged": 0}),
        # Same pair, second relation: the multigraph must keep both.
        Edge("alice", "bob", "enemy_of", 0.4, 1, [Evidence(INJECT, 5, 100, 140, 0.6)], {"slm": 0, "llm": 1, "merged": 0}),
        Edge("alice", "carol", "parent_of", 0.7, 2,
             [Evidence("Alice's daughter Carol.", 1, 0, 22, 0.8), Evidence("Carol & mother", 3, 30, 44, 0.7)],
             {"slm": 2, "llm": 0, "merged": 0}, directed=True),
        Edge("carol", "bob", "mentor_of", 0.55, 1, [Evidence("Carol taught Bob.", 4, 50, 67, 0.55)],
             {"slm": 0, "llm": 0, "merged": 1}, directed=True),
    ]


META = {"book": "test_book.txt", "schema": "characters.v1", "config": {"threshold": 0.3}}


@pytest.fixture(scope="module")
def graph() -> nx.MultiDiGraph:
    return build_graph(characters(), edges(), META)


@pytest.fixture(scope="module")
def out(graph, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("graph")
    files = write_exports(graph, folder)
    assert {p.name for p in files.values()} == {"graph.json", "graph.graphml", "graph.gexf", "nodes.csv",
                                                 "edges.csv", "graph.html", "graph.png"}
    return folder


def test_build_graph_keeps_attributes_and_multi_relation_pairs(graph):
    assert graph.graph == META
    assert set(graph.nodes) == {"alice", "bob", "carol", "dave"}
    assert graph.nodes["alice"] == {"name": "Alice Smith", "aliases": ["Ally", "Miss Smith"], "mentions": 40,
                                    "gender": "f", "narrator": True}
    assert graph.number_of_edges() == 4
    assert set(graph["alice"]["bob"]) == {"spouse_of", "enemy_of"}
    spouse = graph["alice"]["bob"]["spouse_of"]
    assert spouse["directed"] is False and spouse["confidence"] == 0.9 and spouse["support"] == 4
    assert spouse["evidence"] == [{"text": NASTY, "chapter": 2, "start": 10, "end": 60, "confidence": 0.95}]
    assert graph["carol"]["bob"]["mentor_of"]["routes"] == {"slm": 0, "llm": 0, "merged": 1}


def test_symmetric_edges_are_stored_once_and_bad_edges_fail():
    flipped = Edge("bob", "alice", "friend_of", 0.5, 1, [], {"slm": 1})
    graph = build_graph(characters(), [flipped], {})
    assert list(graph.edges(keys=True)) == [("alice", "bob", "friend_of")]
    assert graph["alice"]["bob"]["friend_of"]["routes"] == {"slm": 1, "llm": 0, "merged": 0}
    twice = Edge("alice", "bob", "friend_of", 0.5, 1, [], {})
    with pytest.raises(ValueError, match="duplicate edge"):
        build_graph(characters(), [flipped, twice], {})
    with pytest.raises(ValueError, match="related to itself"):
        build_graph(characters(), [Edge("bob", "bob", "friend_of", 0.5, 1, [], {})], {})
    with pytest.raises(ValueError, match="'bob' \\(Bob Jones\\): duplicate character id"):
        build_graph([*characters(), characters()[1]], [], {})
    with pytest.raises(ValueError, match="unknown character id 'zoe'"):
        build_graph(characters(), [Edge("alice", "zoe", "friend_of", 0.5, 1, [], {})], {})


def test_json_is_node_link_data_and_reads_back(graph, out):
    data = json.loads((out / "graph.json").read_text(encoding="utf-8"))
    assert data["directed"] is True and data["multigraph"] is True and data["graph"] == META
    assert {n["id"]: n for n in data["nodes"]}["carol"] == {
        "id": "carol", "name": CAROL, "aliases": ["</script>"], "mentions": 9, "gender": None, "narrator": False}
    link = next(l for l in data["links"] if l["relation"] == "parent_of")
    assert {k: link[k] for k in ("source", "target", "directed", "support")} == {
        "source": "alice", "target": "carol", "directed": True, "support": 2}
    assert link["evidence"][1] == {"text": "Carol & mother", "chapter": 3, "start": 30, "end": 44, "confidence": 0.7}
    assert link["routes"] == {"slm": 2, "llm": 0, "merged": 0}
    back = read_graph_json(out / "graph.json")
    assert isinstance(back, nx.MultiDiGraph)
    assert dict(back.nodes(data=True)) == dict(graph.nodes(data=True))
    assert sorted(back.edges(keys=True, data=True)) == sorted(graph.edges(keys=True, data=True))
    assert back.graph == graph.graph


def test_read_graph_json_names_the_file(tmp_path):
    bad = tmp_path / "graph.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        read_graph_json(bad)


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
def test_graphml_and_gexf_round_trip_flattened(graph, out, fmt):
    back = (nx.read_graphml(out / "graph.graphml", edge_key_type=str) if fmt == "graphml"
            else nx.read_gexf(out / "graph.gexf"))
    assert back.number_of_nodes() == 4 and back.number_of_edges() == 4
    assert set(back.edges(keys=True)) == set(graph.edges(keys=True))
    alice, carol = back.nodes["alice"], back.nodes["carol"]
    assert alice["aliases"] == "Ally; Miss Smith" and alice["mentions"] == 40 and alice["narrator"] is True
    assert carol["name"] == CAROL and carol["aliases"] == "</script>" and carol["gender"] == ""
    spouse = back["alice"]["bob"]["spouse_of"]
    assert spouse["relation"] == "spouse_of" and spouse["confidence"] == pytest.approx(0.9)
    assert spouse["directed"] is False and back["alice"]["carol"]["parent_of"]["directed"] is True
    assert json.loads(spouse["evidence"]) == graph["alice"]["bob"]["spouse_of"]["evidence"]
    assert (spouse["route_slm"], spouse["route_llm"], spouse["route_merged"]) == (3, 1, 0)
    if fmt == "graphml":
        assert back.graph["book"] == "test_book.txt"
        assert json.loads(back.graph["config"]) == {"threshold": 0.3}
    else:
        assert set(alice["viz"]) >= {"position", "size"}


def test_csv_files(out):
    with (out / "nodes.csv").open(encoding="utf-8", newline="") as handle:
        nodes = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(nodes) == {"alice", "bob", "carol", "dave"}
    assert nodes["alice"]["aliases"] == "Ally; Miss Smith" and nodes["alice"]["degree"] == "3"
    assert nodes["carol"]["name"] == CAROL and nodes["dave"]["degree"] == "0"
    with (out / "edges.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["source"], r["target"], r["relation"]) for r in rows) == [
        ("alice", "bob", "enemy_of"), ("alice", "bob", "spouse_of"), ("alice", "carol", "parent_of"),
        ("carol", "bob", "mentor_of")]
    spouse = next(r for r in rows if r["relation"] == "spouse_of")
    assert json.loads(spouse["evidence"])[0]["text"] == NASTY and spouse["route_slm"] == "3"
    assert spouse["target_name"] == "Bob Jones" and spouse["directed"] == "0"


def test_write_exports_selected_formats_and_unknown(graph, tmp_path):
    files = write_exports(graph, tmp_path, ["json", "csv"])
    assert set(files) == {"json", "nodes_csv", "edges_csv"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.csv", "graph.json", "nodes.csv"]
    with pytest.raises(ValueError, match="unknown export format 'svg'"):
        write_exports(graph, tmp_path, ["json", "svg"])
    assert set(FORMATS) == {"json", "graphml", "gexf", "csv", "html", "png"}


def _embedded_data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S)
    return json.loads(block.group(1))


def test_html_is_offline_and_escapes_book_text(out):
    page = (out / "graph.html").read_text(encoding="utf-8")
    # Only the page's own two script elements may close: book text never ends one early.
    assert page.count("</script>") == 2 and page.count("<script") == 2
    assert "<b>" not in page and "&lt;b&gt;&amp;amp; Co&lt;/b&gt;" in page
    assert "Carol &quot;Cat&quot;" in page
    # No way to reach the network: no external sources, stylesheets, imports or URLs other than #fragments.
    markup = re.sub(r'<script type="application/json".*?</script>', "", page, flags=re.S)
    assert not re.search(r"\b(src|href)\s*=|<link|@import|url\((?!#)|https?://", markup)
    data = _embedded_data(page)
    assert [n["name"] for n in data["nodes"]] == ["Alice Smith", "Bob Jones", CAROL, "Dave"]
    texts = [ev["text"] for e in data["edges"] for ev in e["evidence"]]
    assert NASTY in texts and INJECT in texts
    for relation, colour in RELATION_COLOURS.items():
        if relation in ("spouse_of", "enemy_of", "parent_of", "mentor_of"):
            assert f'stroke="{colour}"' in page
    assert page.count('class="node"') == 4 and page.count('class="edge"') == 4
    assert page.count('marker-end="url(#arrow-') == 2  # only the directed relations get arrow heads


def test_relation_colours_are_stable_and_cover_unknown_labels():
    graph = build_graph(characters(), [Edge("alice", "bob", "zzz_custom", 0.5, 1, [], {}),
                                       Edge("alice", "bob", "friend_of", 0.5, 1, [], {})], {})
    colours = relation_colours(graph)
    assert list(colours) == ["friend_of", "zzz_custom"]
    assert colours["friend_of"] == RELATION_COLOURS["friend_of"]
    assert colours["zzz_custom"] not in RELATION_COLOURS.values()


def _png(path: Path):
    from PIL import Image

    image = Image.open(path).convert("RGB")
    return image, set(image.getdata())


def _has_colour(pixels: set, colour: str, tolerance: int = 12) -> bool:
    target = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return any(all(abs(p[i] - target[i]) <= tolerance for i in range(3)) for p in pixels)


def _coloured_pixels(image) -> int:
    """Pixels that are clearly not grey: the edges (the nodes are near-white, the labels black)."""
    return sum(1 for r, g, b in image.getdata() if max(r, g, b) - min(r, g, b) > 60)


def test_png_overview(out):
    assert (out / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image, pixels = _png(out / "graph.png")
    assert image.size[0] >= 1200 and len(pixels) > 50
    # The legend shows every relation in its colour; the edges add many more coloured pixels than the legend.
    assert all(_has_colour(pixels, RELATION_COLOURS[r]) for r in ("spouse_of", "enemy_of", "parent_of", "mentor_of"))
    assert _coloured_pixels(image) > 3000


# --- the HTML view in a real browser -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("COLLAB_REQUIRE_CHROMIUM"),
    reason="chromium not installed (scripts/install_chromium.sh); set COLLAB_REQUIRE_CHROMIUM to fail instead")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "COLLAB_REQUIRE_CHROMIUM is set but chromium is missing: run scripts/install_chromium.sh"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.integration
@needs_chromium
def test_html_view_runs_in_headless_chromium(out, tmp_path):
    page = out / "graph.html"
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert re.search(r'<html[^>]*data-ready="1"', dom), "the page script did not finish"
    assert dom.count('class="node"') == 4 and dom.count('class="edge"') == 4
    for name in ("Alice Smith", "Bob Jones", "Dave", "Carol \"Cat\" &lt;b&gt;&amp;amp; Co&lt;/b&gt;"):
        assert f">{name}</text>" in dom
    assert '<span id="status">4 characters, 4 relations</span>' in dom
    assert "<title>test_book.txt</title>" in dom

    # Opening an edge through the address shows its evidence in the panel, as text.
    data = _embedded_data(page.read_text(encoding="utf-8"))
    nasty = next(i for i, e in enumerate(data["edges"]) if e["relation"] == "spouse_of")
    dom = _chromium(tmp_path, "--dump-dom", f"{page.as_uri()}#edge-{nasty}").stdout
    panel = re.search(r'<aside id="panel">(.*?)</aside>', dom, re.S).group(1)
    assert "Chapter 2" in panel and "spouse_of" in panel
    assert "&lt;/script&gt;&lt;script&gt;document.title='pwned'&lt;/script&gt;" in panel
    assert "<title>test_book.txt</title>" in dom and "pwned</title>" not in dom

    injected = next(i for i, e in enumerate(data["edges"]) if e["relation"] == "enemy_of")
    dom = _chromium(tmp_path, "--dump-dom", f"{page.as_uri()}#edge-{injected}").stdout
    assert "&lt;img src=x onerror=" in dom and "<img" not in dom
    assert "data-pwned" not in re.search(r"<html[^>]*>", dom).group(0)

    # A character opens with its relations listed.
    dom = _chromium(tmp_path, "--dump-dom", f"{page.as_uri()}#node-0").stdout
    panel = re.search(r'<aside id="panel">(.*?)</aside>', dom, re.S).group(1)
    assert "Alice Smith" in panel and "Relations (3)" in panel and "Also: Ally; Miss Smith" in panel


@pytest.mark.integration
@needs_chromium
def test_html_view_screenshot_is_not_blank(out, tmp_path):
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,800", (out / "graph.html").as_uri())
    image, pixels = _png(shot)
    assert image.size == (1200, 800)
    assert len(pixels) > 50, "the screenshot is (nearly) one colour"
    assert _has_colour(pixels, RELATION_COLOURS["spouse_of"]) and _has_colour(pixels, RELATION_COLOURS["parent_of"])
    assert _coloured_pixels(image) > 3000, "the edges were not drawn"
