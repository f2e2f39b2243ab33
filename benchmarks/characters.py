"""Character finding against gold character lists: precision, recall and F1 of characters, and time per novel.

    .venv/bin/python benchmarks/characters.py                      # a default handful of PDNC novels
    .venv/bin/python benchmarks/characters.py --novels all --json out.json
    .venv/bin/python benchmarks/characters.py --novels all --reprint single-quotes  # the books in British quotes
    .venv/bin/python benchmarks/characters.py --novels all --reprint accented-names # names as in translations
    .venv/bin/python benchmarks/characters.py --novels all --reprint dash-dialogue  # speech opened by a dash

Gold: PDNC `characters.json` (main_name, aliases, gender, category) for the novel texts in
`<shared>/datasets/pdnc/novels/<Novel>/novel_text.txt`, or in `<shared>/datasets/novels/` for the four whose
PDNC text is withheld (the shared folder as `collab.datasets` finds it: --shared, $COLLAB_SHARED, ../shared).
A predicted character matches the gold character whose aliases its name or aliases hit (its name first, else
most alias hits; case, accents, full stops and a leading "the" ignored).
- recall: major + intermediate gold characters matched by at least one predicted character;
- precision: predicted characters that are the best match (most mentions) of some gold character of any category,
  so a character split in two counts once right and once wrong; `lenient` counts every matching prediction;
- gender: agreement with gold on matched characters that got a gender.
An unnamed narrator character is scored apart (detected or not, against PDNC's narrative person). Books are read
with `collab.book.text.read_book`; the time is `find_characters` alone (spaCy loaded before). Prints one line per
novel and a JSON summary (macro scores, and on how many novels narrator detection agrees with gold).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT = ["MansfieldPark", "OliverTwist", "TheSignOfTheFour", "AnneOfGreenGables", "HardTimes", "Emma"]
WITHHELD = {"Emma": "emma.txt", "NorthangerAbbey": "northanger_abbey.txt",
            "SenseAndSensibility": "sense_and_sensibility.txt",
            "ThePictureOfDorianGray": "the_picture_of_dorian_gray.txt"}


def norm(name: str) -> str:
    unaccented = "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c))
    words = unaccented.replace(".", " ").replace("’", "'").lower().split()
    return " ".join(words[1:] if words[:1] == ["the"] and len(words) > 1 else words)


def score(novel: str, characters, gold: dict) -> dict:
    golds = gold["characters"]
    alias_sets = [{norm(a) for a in g["aliases"]} | {norm(g["main_name"])} for g in golds]
    # An unnamed narrator has no gold alias to hit; a named one is scored like any character.
    predicted = [c for c in characters.characters if not (c.narrator and c.name == "Narrator")]
    best_for_gold: dict[int, tuple[int, str]] = {}
    matched: dict[str, int] = {}
    for c in predicted:
        names = [norm(c.name)] + [norm(a) for a in c.aliases]
        by_name = [i for i, s in enumerate(alias_sets) if names[0] in s]
        hits = [(sum(n in s for n in names), i) for i, s in enumerate(alias_sets)]
        hits = [h for h in hits if h[0]]
        if not by_name and not hits:
            continue
        i = by_name[0] if len(by_name) == 1 else max(hits)[1]
        matched[c.id] = i
        if c.mentions > best_for_gold.get(i, (-1, ""))[0]:
            best_for_gold[i] = (c.mentions, c.id)
    main = [i for i, g in enumerate(golds) if g["category"] in ("major", "intermediate")]
    found = [i for i in main if i in best_for_gold]
    tp = len(best_for_gold)
    precision = tp / len(predicted) if predicted else 0.0
    recall = len(found) / len(main) if main else 0.0
    gendered = [(c.gender, golds[matched[c.id]]["gender"].lower()) for c in predicted
                if c.id in matched and c.gender and golds[matched[c.id]]["gender"] in ("M", "F")]
    narrated = any(c.narrator for c in characters.characters)
    return {"novel": novel, "predicted": len(predicted), "gold_main": len(main), "precision": round(precision, 3),
            "lenient_precision": round(len(matched) / len(predicted), 3) if predicted else 0.0,
            "recall": round(recall, 3),
            "f1": round(2 * precision * recall / (precision + recall), 3) if precision + recall else 0.0,
            "gender_accuracy": round(sum(p == g for p, g in gendered) / len(gendered), 3) if gendered else None,
            "narrator": narrated, "first_person_gold": gold.get("narrative_person") == "1.0",
            "missed": [golds[i]["main_name"] for i in main if i not in best_for_gold]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--novels", default=",".join(DEFAULT), help="comma-separated PDNC folder names, or all")
    parser.add_argument("--min-mentions", type=int, default=2)
    parser.add_argument("--json", help="also write the per-novel results here")
    parser.add_argument("--shared", help="the shared data folder")
    parser.add_argument("--reprint", choices=sorted(REPRINTS),
                        help="reprint each novel in another style first (in memory, offsets kept): single-quotes "
                             "(“ ” and \" become ‘ ’ and ', as many British editions print them), accented-names "
                             "(an accent in every word of the gold characters' names: Bennet becomes Bénnet), "
                             "dash-dialogue (a speech opening a paragraph opens with a dash, the other double "
                             "marks go, as in translations and in Joyce)")
    args = parser.parse_args()

    from collab.book.characters import find_characters, load_nlp
    from collab.book.text import read_book, split_book
    from collab.datasets import datasets_root

    shared = datasets_root(args.shared)
    root = shared / "pdnc" / "novels"
    names = sorted(p.name for p in root.iterdir() if (p / "novel_text.txt").exists() or p.name in WITHHELD) \
        if args.novels == "all" else args.novels.split(",")
    nlp = load_nlp()
    results = []
    for novel in names:
        text_path = shared / "novels" / WITHHELD[novel] if novel in WITHHELD else root / novel / "novel_text.txt"
        gold = json.loads((root / novel / "characters.json").read_text(encoding="utf-8"))
        book = read_book(text_path)
        if args.reprint:
            book = split_book(REPRINTS[args.reprint](book.text, gold), book.path, book.stripped)
        started = time.perf_counter()
        characters = find_characters(book, min_mentions=args.min_mentions, nlp=nlp)
        seconds = time.perf_counter() - started
        result = score(novel, characters, gold) | {"seconds": round(seconds, 1), "words": len(book.text.split())}
        results.append(result)
        print(f"{novel:28s} P {result['precision']:.3f} (lenient {result['lenient_precision']:.3f}) "
              f"R {result['recall']:.3f} F1 {result['f1']:.3f} gender {result['gender_accuracy']} "
              f"pred {result['predicted']} gold {result['gold_main']} narrator {result['narrator']}"
              f"/{result['first_person_gold']} {result['words']} words {seconds:.1f}s", flush=True)
    summary = {key: round(sum(r[key] for r in results) / len(results), 3)
               for key in ("precision", "lenient_precision", "recall", "f1", "seconds")}
    print(json.dumps({"novels": len(results), "min_mentions": args.min_mentions, "reprint": args.reprint,
                      "macro": summary, "narrator_right": sum(r["narrator"] == r["first_person_gold"] for r in results),
                      "narrators_found": sum(r["narrator"] for r in results)}))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


def single_quoted(text: str, gold: dict) -> str:
    """`text` with its double quotation marks made single (one character for one, so offsets stay)."""
    return text.replace("“", "‘").replace("”", "’").replace('"', "'")


def accented_names(text: str, gold: dict) -> str:
    """`text` with the first vowel after the first letter of each gold name word accented, one character for one
    ("Elizabeth Bennet" becomes "Elízabeth Bénnet"); titles ("Mrs"), words of two letters and words the book also
    writes in lower case ("The Cat", "Rabbit") are left."""
    from collab.book.characters import ABBREVIATIONS, TITLES

    lower = set(re.findall(r"\b[a-z]{3,}\b", text))
    names = {w for g in gold["characters"] for alias in [g["main_name"], *g["aliases"]]
             for w in re.findall(r"\b[A-Z][a-z]{2,}\b", alias) if w.lower() not in lower}
    names -= set(TITLES) | set(ABBREVIATIONS)
    if not names:
        return text
    sharp = str.maketrans("aeiouy", "áéíóúý")

    def accent(word: str) -> str:
        i = next((i for i, c in enumerate(word) if i and c in "aeiouy"), None)
        return word if i is None else word[:i] + word[i].translate(sharp) + word[i + 1:]

    pattern = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    return re.sub(rf"\b(?:{pattern})\b", lambda m: accent(m.group()), text)


def dash_dialogue(text: str, gold: dict) -> str:
    """`text` with a double mark that opens a paragraph made an em dash and the other double marks spaces, so
    speech is marked only where a paragraph opens with it ("—Yes, said she, I will."); offsets stay."""
    text = re.sub(r"(\A|\n[ \t]*\n)([ \t_]*)[“\"]", r"\1\2—", text)
    return text.replace("“", " ").replace("”", " ").replace('"', " ")


REPRINTS = {"single-quotes": single_quoted, "accented-names": accented_names, "dash-dialogue": dash_dialogue}


if __name__ == "__main__":
    main()
