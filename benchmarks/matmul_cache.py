"""Do the guide's matrix products slow down when their weights come from memory instead of cache, and would
weights prepacked for oneDNN run them faster?

    python benchmarks/matmul_cache.py --rows 368 --threads 2

Times SmolLM2-135M's seven projection shapes (q, k, v, o, gate, up, down) as `F.linear` on `--rows` tokens
(8 pairs of 46 tokens), once with the 7 weight matrices reused ("hot") and once with 30 layers' worth of
distinct ones, 210 matrices and 420 MB, so none stays in cache ("cold"); then the hot ones prepacked for
oneDNN's linear ("packed", what `torch.compile` with inductor's weight freezing runs on a CPU) in place of
`F.linear`, which calls MKL. Prints GFLOP/s of each, three trials, as JSON lines.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

HIDDEN, INTERMEDIATE, KV, LAYERS = 576, 1536, 192, 30
SHAPES = [(HIDDEN, HIDDEN), (HIDDEN, KV), (HIDDEN, KV), (HIDDEN, HIDDEN), (HIDDEN, INTERMEDIATE),
          (HIDDEN, INTERMEDIATE), (INTERMEDIATE, HIDDEN)]  # (in, out) per projection of one layer


def gflops(weights: list[torch.Tensor], rows: int, passes: int, packed: list[torch.Tensor] | None = None) -> float:
    inputs = {HIDDEN: torch.randn(rows, HIDDEN), INTERMEDIATE: torch.randn(rows, INTERMEDIATE)}
    start = time.perf_counter()
    for _ in range(passes):
        for i, w in enumerate(weights):
            if packed is None:
                torch.nn.functional.linear(inputs[w.shape[1]], w)
            else:
                torch.ops.mkldnn._linear_pointwise(inputs[w.shape[1]], packed[i], None, "none", [], "")
    flops = passes * sum(2 * rows * w.shape[0] * w.shape[1] for w in weights)
    return flops / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=368)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hot = [torch.randn(o, i) for i, o in SHAPES]
    cold = [torch.randn(o, i) for _ in range(LAYERS) for i, o in SHAPES]
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, args.rows) for w in hot]
    gflops(hot, args.rows, 2), gflops(cold, args.rows, 1), gflops(hot, args.rows, 2, packed)  # warm-up
    for trial in range(3):
        print(json.dumps({"rows": args.rows, "threads": args.threads, "trial": trial,
                          "hot_gflops": round(gflops(hot, args.rows, LAYERS), 1),
                          "cold_gflops": round(gflops(cold, args.rows, 1), 1),
                          "packed_gflops": round(gflops(hot, args.rows, LAYERS, packed), 1)}))


if __name__ == "__main__":
    main()
