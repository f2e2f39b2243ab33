"""Time of the book-text stage on the shared novels: read_book (decode, Gutenberg strip, split) and split_book alone.

    python benchmarks/book_text.py --repeats 5

Prints one JSON object per novel, largest first: size, chapters, sentences, and the best and median seconds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shared", default=None, help="shared data folder (default: collab.datasets.shared_root)")
    args = parser.parse_args()

    from collab.book.text import read_book, split_book
    from collab.datasets import shared_root

    novels = sorted((shared_root(args.shared) / "datasets" / "novels").glob("*.txt"), key=lambda p: -p.stat().st_size)
    for path in novels:
        book = read_book(path)
        read = timed(lambda: read_book(path), args.repeats)
        split = timed(lambda: split_book(book.text), args.repeats)
        print(json.dumps({
            "novel": path.name, "bytes": path.stat().st_size, "chapters": sum(1 for c in book.chapters if c.number),
            "sentences": len(book.sentences),
            "read_book_s": {"best": round(min(read), 3), "median": round(statistics.median(read), 3)},
            "split_book_s": {"best": round(min(split), 3), "median": round(statistics.median(split), 3)},
        }))


if __name__ == "__main__":
    main()
