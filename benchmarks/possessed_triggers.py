"""What the trigger words' rules (possessives, names and addresses, other senses) change in a `books` run, and
how often they are right.

    python benchmarks/possessed_triggers.py --run out/bench/books/massey          # a folder of book runs
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/possessed_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/called_and_shared_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/speaker_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/other_sense_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/of_owned_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/indefinite_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/quoted_pronoun_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/unowned_pronoun_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/married_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/pronoun_gender_triggers_massey_dev.jsonl
    python benchmarks/possessed_triggers.py --run DIR --judged benchmarks/gold/second_person_triggers_massey_dev.jsonl

For every book run under `--run` (folders holding `stages/`), counts the (pair sentence, label) cases among the
guide's five best labels of the sentence where a trigger word counted before the rules and does not with them
(collab/book/triggers.py), and prints a seeded sample of them to read. With `--judged` (a sample read by hand:
each line the case plus `"states": true|false`, whether the sentence states that relation between the two), it
prints how many of the judged cases this run's rules still block and how many they get right: blocked where the
sentence does not state the relation, counted where it does. Each judged file is a seeded sample of the cases one
rule stopped when it was added (the first drawn by this script, the others by scratch scripts that ran the rules with
and without that rule), except the "of", "unowned pronoun" and "second person" files, which hold every case those
rules stop.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collab.book.edges import MENTION_LABELS  # noqa: E402
from collab.book.pairs import PairMention  # noqa: E402
from collab.book.records import BookText, Characters  # noqa: E402
from collab.book.triggers import TriggerWords  # noqa: E402
from collab.schema import load_schema  # noqa: E402


def _stage(folder: Path, name: str):
    return json.loads((folder / "stages" / f"{name}.json").read_text(encoding="utf-8"))["data"]


def blocked_cases(book_dir: Path, schema) -> list[dict]:
    """The cases of one book run where the rule stops a trigger from counting."""
    text = BookText.from_json(_stage(book_dir, "text"))
    characters = Characters.from_json(_stage(book_dir, "characters"))
    where = [PairMention(**w) for w in _stage(book_dir, "pairs")["where"]]
    with (book_dir / "stages" / "relations.jsonl").open(encoding="utf-8") as lines:
        predictions = {p["id"]: p for p in map(json.loads, lines)}
    before, after = TriggerWords(text, schema), TriggerWords(text, schema, characters)
    names = {c.id: c.name for c in characters.characters}
    cases = []
    for mention in where:
        prediction = predictions.get(mention.id)
        if prediction is None:
            continue
        ranked = sorted(prediction["distribution"].items(), key=lambda item: -item[1])[:MENTION_LABELS]
        for label, probability in ranked:
            if before.states(label, mention) and not after.states(label, mention):
                cases.append({"book": book_dir.name, "label": label, "head": names[mention.head],
                              "tail": names[mention.tail], "probability": round(probability, 3),
                              "sentence": text.text[mention.start:mention.end].replace("\n", " ")})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a books output folder (or one book's)")
    parser.add_argument("--schema", default="characters")
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--judged", help="the sample read by hand (JSONL with `states`)")
    args = parser.parse_args()
    schema = load_schema(args.schema)
    books = sorted(p.parent.parent for p in Path(args.run).glob("**/stages/relations.jsonl"))
    if not books:
        sys.exit(f"{args.run}: no book runs (folders with stages/relations.jsonl)")
    cases, per_book = [], {}
    for book in books:
        found = blocked_cases(book, schema)
        per_book[book.name] = len(found)
        cases += found
    random.Random(args.seed).shuffle(cases)
    result = {"run": args.run, "blocked": len(cases), "per_book": per_book, "seed": args.seed,
              "sample": cases[:args.sample]}
    if args.judged:
        judged = [json.loads(line) for line in Path(args.judged).read_text(encoding="utf-8").splitlines() if line]
        fields = ("book", "label", "head", "tail", "sentence")
        blocked = {tuple(c[f] for f in fields) for c in cases}
        still = [tuple(j[f] for f in fields) in blocked for j in judged]
        # right: a case still blocked whose sentence does not state the relation, or one this run's rule lets
        # count again whose sentence does
        result["judged"] = {"cases": len(judged), "still_blocked": sum(still),
                            "rule_right": sum(j["states"] != kept for j, kept in zip(judged, still))}
        del result["sample"]
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
