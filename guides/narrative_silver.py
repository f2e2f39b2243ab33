"""Silver training pairs in narrative prose for the `characters` schema, from novels no evaluation reads.

DialogRE, the schema's only gold training data, is TV dialogue: nine pairs in ten hold a relation and the
evidence is spread over a scene. A novel's pair sentences are the opposite: most name two characters and
state nothing about how they are related, and a guide trained on DialogRE alone reads a relation into them
(both characters guides label 41-42 of the 49 no_relation sentences of our Pride and Prejudice pairs).

Silver negatives from the PDNC novel texts, with their gold character lists as aliases: a sentence that names
two characters and holds none of the schema's trigger words ("sister", "married", "friend", ...) is a silver
`no_relation`. Read on a sample, these are nearly always right at the sentence level (characters who meet,
talk, sit together). Silver *positives* were tried too, by distant supervision from the Massey et al. dyads
of five of these novels (a dyad's two names plus one of its label's trigger words near them), and dropped:
of the 47 found, about half were wrong or doubtful when read ("Fanny shared her aunt's security, till she
received a few lines from Edmund" for Fanny and Edmund, cousins). And negatives alone do not make a books
guide: trained on DialogRE plus these, the MiniLM guide learns that narrative prose means no_relation and a
book graph loses nearly every edge (BENCHMARKS.md, "Silver narrative negatives"). They wait for narrative
positives to mix with; `guides/data/pdnc_cued_pairs.jsonl` is a first, hand-labelled set of them, drawn
with `--cued-per-novel`.

Only name and title mentions pair up (no pronoun, speaker or narrator anchors), so each pair's two entities
are names. No evaluation reads these novels: the books dev set is the Massey dyads of the staged novels in
`datasets/novels/` and the test sets are Pride and Prejudice and CONAN, all other texts. Novels are split
into train and dev by title (`DEV_NOVELS`), so settings can be chosen on novels the guide was not trained on.

    python -m guides.narrative_silver --out out/data/narrative-silver

writes `train.jsonl`, `dev.jsonl` (the repo's pair schema, source "pdnc-silver") and `stats.json`; with
`--cued-per-novel N` also `cued.jsonl`: N sentences per training novel that name two characters and hold a
trigger word, unlabelled, the pool from which narrative pairs are labelled by hand.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from collab.book.characters import find_characters, load_nlp
from collab.book.pairs import book_pairs
from collab.book.text import read_book
from collab.book.triggers import trigger_patterns
from collab.data import Pair, write_jsonl
from collab.datasets import datasets_root
from collab.files import atomic_write_text
from collab.schema import Schema, load_schema

PDNC_NOVELS = "pdnc/novels"
# Held out for choosing settings (epochs, thresholds) on novels the guide was not trained on.
DEV_NOVELS = ("Hard Times", "The Awakening", "Daisy Miller", "The Sign of the Four")
PER_NOVEL = 40  # a sample from each novel, so that no long novel outweighs the rest
NAMED = ("name", "title")


def novel_pairs(text_path: Path, aliases: dict[str, list[str]], schema: Schema, *, nlp: Any = None,
                name: str = "") -> tuple[list[Pair], list[Pair]]:
    """One novel's sentences naming two characters (by a name or title mention), in book order, as
    (silver no_relation pairs: no trigger word of the schema, unlabelled pairs that hold one).
    `aliases`: {main name: [alias, ...]}."""
    book = read_book(text_path)
    characters = find_characters(book, min_mentions=1, aliases=aliases, nlp=nlp)
    named = replace(characters, mentions=[m for m in characters.mentions if m.kind in NAMED])
    pairs, _ = book_pairs(book, named)
    patterns = list(trigger_patterns(schema).values())
    negatives, cued = [], []
    for pair in pairs:
        pair = replace(pair, id=f"{name}:{pair.id}", source="pdnc-silver")
        if any(pattern.search(pair.text) for pattern in patterns):
            cued.append(pair)
        else:
            negatives.append(replace(pair, relation=schema.negative))
    return negatives, cued


def build(out: Path, *, shared: str | Path | None = None, per_novel: int = PER_NOVEL, cued_per_novel: int = 0,
          seed: int = 13, schema: Schema | None = None) -> dict[str, Any]:
    """Every PDNC novel with a text: a seeded sample of at most `per_novel` of its silver pairs (kept in book
    order) into train.jsonl, or dev.jsonl for DEV_NOVELS; and, from the training novels, a sample of
    `cued_per_novel` sentences holding a trigger word into cued.jsonl, unlabelled, for labelling by hand.
    Returns the stats, also written to stats.json."""
    schema = schema or load_schema("characters")
    nlp = load_nlp()
    # two generators, so asking for cued sentences does not change which negatives are drawn
    rng, cued_rng = random.Random(seed), random.Random(f"{seed}-cued")
    dev_titles = {title.casefold() for title in DEV_NOVELS}
    splits: dict[str, list[Pair]] = {"train": [], "dev": [], "cued": []}
    stats: dict[str, Any] = {"seed": seed, "per_novel": per_novel, "cued_per_novel": cued_per_novel, "novels": {}}
    folders = sorted(p for p in (datasets_root(shared) / PDNC_NOVELS).iterdir() if (p / "novel_text.txt").is_file())
    for folder in folders:
        info = json.loads((folder / "characters.json").read_text(encoding="utf-8"))
        title = info["novel"]
        aliases = {c["main_name"]: list(c["aliases"]) for c in info["characters"]}
        found, cued = novel_pairs(folder / "novel_text.txt", aliases, schema, nlp=nlp, name=folder.name)
        kept = sorted(rng.sample(range(len(found)), min(per_novel, len(found))))
        split = "dev" if title.casefold() in dev_titles else "train"
        splits[split] += [replace(found[i], split=split) for i in kept]
        if split == "train":
            picked = sorted(cued_rng.sample(range(len(cued)), min(cued_per_novel, len(cued))))
            splits["cued"] += [replace(cued[i], split="train") for i in picked]
        stats["novels"][title] = {"split": split, "found": len(found), "kept": len(kept), "cued": len(cued)}
        print(f"{title}: {len(kept)} of {len(found)} ({split})", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        write_jsonl(out / f"{split}.jsonl", pairs)
        stats[split] = len(pairs)
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--shared", default=None,
                        help="folder holding datasets/ (default: ../shared or $COLLAB_SHARED)")
    parser.add_argument("--per-novel", type=int, default=PER_NOVEL, help="pairs kept per novel")
    parser.add_argument("--cued-per-novel", type=int, default=0,
                        help="sentences with a trigger word sampled per training novel into cued.jsonl, to label")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    stats = build(args.out, shared=args.shared, per_novel=args.per_novel, cued_per_novel=args.cued_per_novel,
                  seed=args.seed)
    print(json.dumps({split: stats[split] for split in ("train", "dev", "cued")}))


if __name__ == "__main__":
    main()
