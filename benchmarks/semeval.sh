#!/usr/bin/env bash
# The SemEval-2010 T8 figures of BENCHMARKS.md: shipped guide vs untuned SmolLM2 on the full test split,
# then prediction speed against naive generation. Run from the repository root after `make setup`.
# Outputs go to out/bench/ (JSON per figure, eval reports, predictions).
set -euo pipefail
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
OUT=out/bench
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

run() {  # name, then predict flags
  local name=$1; shift
  /usr/bin/time -f "%e s wall" "$PY" run_pipeline.py predict --data semeval:test --out "$OUT/$name.pred.jsonl" \
    --threads "$THREADS" "$@"
  "$PY" run_pipeline.py eval --gold semeval:test --pred "$OUT/$name.pred.jsonl" --json \
    --report "$OUT/$name.report" > "$OUT/$name.eval.json"
  "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], 'micro-F1', round(r['micro_f1'],4), 'macro-F1', round(r['macro_f1'],4), 'valid', r['schema_valid_rate'])" "$OUT/$name.eval.json" "$name"
}

run guide-smollm2 --guide semeval-smollm2
"$PY" benchmarks/speed.py --data semeval:test --n 200 --threads "$THREADS" > "$OUT/speed.json"
cat "$OUT/speed.json"
run zeroshot-schema-enum --guide none --prompt slm/schema_enum.v1
