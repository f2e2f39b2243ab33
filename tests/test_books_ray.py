"""books --backend ray: three small books as Ray tasks on a local instance, their pair sentences split into
tasks of their own, give the same graphs as one process, with the real shipped characters guide
(integration: starts Ray and loads MiniLM in its workers)."""
from __future__ import annotations

import importlib.util
import json

import pytest
from test_books_cli import BOOK

from collab import cli

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed "
                                 "(pip install 'collab[ray]')")]

NAMES = {"norland": {}, "barton": {"Dashwood": "Jennings", "Norland": "Barton"},
         "delaford": {"Dashwood": "Brandon", "Edward Ferrars": "John Willoughby"}}


@pytest.fixture
def books(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    for name, swaps in NAMES.items():
        text = BOOK
        for old, new in swaps.items():
            text = text.replace(old, new)
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def graphs(out):
    return {name: json.loads((out / name / "graph.json").read_text()) for name in NAMES}


def test_ray_and_one_process_give_identical_graphs(books, tmp_path):
    common = [str(books), "--min-mentions", "2", "--exports", "json,csv", "--edge-threshold", "0.2",
              "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(["books", *common, "--out", str(tmp_path / "local")]) == 0
    # Tasks of 3 pair sentences: each book's relation stage is spread over several tasks.
    assert cli.main(["books", *common, "--out", str(tmp_path / "ray"), "--backend", "ray",
                     "--ray-pairs-per-task", "3"]) == 0
    local, distributed = graphs(tmp_path / "local"), graphs(tmp_path / "ray")
    assert local == distributed
    assert all(g["nodes"] for g in local.values()) and any(g["links"] for g in local.values())
    for name in NAMES:
        assert (tmp_path / "ray" / name / "edges.csv").read_text() == (tmp_path / "local" / name / "edges.csv").read_text()
    pair_mentions = [json.loads((tmp_path / "ray" / n / "run.json").read_text())["counts"]["pair_mentions"]
                     for n in NAMES]
    assert max(pair_mentions) > 3
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert [book["book"].rsplit("/", 1)[1] for book in summary["books"]] == sorted(f"{n}.txt" for n in NAMES)
    assert summary["failed"] == []


def test_a_local_ray_instance_runs_in_privacy_mode(books, tmp_path):
    """The driver runs under the network guard: a local instance must talk over loopback only."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "norland.txt").write_text((books / "norland.txt").read_text())
    assert cli.main(["books", str(one), "--out", str(tmp_path / "out"), "--min-mentions", "2", "--exports", "json",
                     "--backend", "ray", "--privacy", "local", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert (tmp_path / "out" / "norland" / "graph.json").is_file()


def test_privacy_mode_refuses_a_remote_ray_address(books, tmp_path, capsys):
    code = cli.main(["books", str(books), "--out", str(tmp_path / "out"), "--backend", "ray", "--privacy", "local",
                     "--ray-address", "10.0.0.7:6379"])
    assert code == 2 and "refuses the Ray address" in capsys.readouterr().err
