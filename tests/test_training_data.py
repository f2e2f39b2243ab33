"""The hand-labelled training pairs in guides/data: valid records of the characters schema, from training
novels only."""
import json
from pathlib import Path

from collab.data import read_pairs
from collab.schema import load_schema
from guides.narrative_silver import DEV_NOVELS

DATA = Path(__file__).resolve().parents[1] / "guides" / "data" / "pdnc_cued_pairs.jsonl"


def test_cued_pairs_are_valid_characters_pairs_from_training_novels():
    schema = load_schema("characters")
    pairs = list(read_pairs(DATA, schema=schema, require_label=True))
    assert len(pairs) == len({p.id for p in pairs}) == len(DATA.read_text().splitlines())
    for pair in pairs:
        assert pair.text[pair.head.start:pair.head.end] == pair.head.text
        assert pair.text[pair.tail.start:pair.tail.end] == pair.tail.text
        assert pair.source == "pdnc-hand" and pair.split == "train"
    labels = {p.relation for p in pairs}
    assert schema.negative in labels and len(labels) > 5
    # novels are named by their PDNC folder in the ids; none may be a dev novel
    dev_folders = {title.replace(" ", "").replace("-", "").casefold() for title in DEV_NOVELS}
    folders = {json.loads(line)["id"].split(":")[0].replace("-", "").casefold() for line in DATA.open()}
    assert folders and not folders & dev_folders
