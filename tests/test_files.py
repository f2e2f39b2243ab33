"""Atomic writes and resumable JSONL outputs."""
import json
import os

from collab.files import PartialJsonl, atomic_write_text


def test_atomic_write_gives_a_normally_readable_file(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "x")
    assert path.read_text() == "x"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_partial_output_resumes_and_finishes_in_input_order(tmp_path):
    out = tmp_path / "pred.jsonl"
    first = PartialJsonl(out, "k1")
    first.add({"id": "b", "relation": "x"})
    first.add({"id": "a", "relation": "y"})
    first._handle.close()  # the process dies here
    with open(out.with_name("pred.jsonl.partial"), "a", encoding="utf-8") as handle:
        handle.write('{"id": "c", "rel')  # and its last line was cut short
    second = PartialJsonl(out, "k1")
    assert set(second.done) == {"a", "b"}
    second.add({"id": "c", "relation": "z"})
    assert second.finish(["a", "b", "c"]) == 3
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]
    assert not out.with_name("pred.jsonl.partial").exists()


def test_partial_output_with_another_key_starts_over(tmp_path):
    out = tmp_path / "pred.jsonl"
    first = PartialJsonl(out, "old settings")
    first.add({"id": "a", "relation": "x"})
    first._handle.close()
    assert PartialJsonl(out, "new settings").done == {}
