"""The command line: `python run_pipeline.py COMMAND ...`. Each command is a thin layer over the API."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from guides.models import ModelError

from . import api, datasets
from .config import TRAIN_FLAGS, Config, TrainSettings, add_config_flags, config_from_args, flag
from .book.records import BookError
from .data import DataError, LoadStats
from .llm import LLMError
from .local_llm import LocalLLMError
from .retrieval import CANDIDATE_MASS, CANDIDATES
from .schema import SchemaError, load_schema

DEMO_DATA = Path(__file__).resolve().parent / "demo" / "sentences.jsonl"
MODEL_FLAGS = ["schema", "guide", "guide_url", "guide_served_model", "model", "prompt", "four_bit", "batch_size",
               "threads", "cache_dir", "index"]
ESCALATION_FLAGS = [name for name in Config.__dataclass_fields__ if name.startswith(("escalate", "merge", "llm_"))] + [
    "weak_k", "max_llm_calls", "max_cost", "prices", "privacy", "audit_log", "local_llm"]


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=None, ensure_ascii=False))


def _read(config: Config, spec: str, *, require_label: bool = False, schema_name: str | None = None):
    """Pairs from a data spec, the schema they were read into, and the load counts."""
    source = datasets.resolve(spec, config.shared)
    name = schema_name or source.schema
    schema = load_schema(name) if name else None
    stats = LoadStats()
    pairs = list(source.read(schema=schema, require_label=require_label,
                             skip_invalid=config.skip_invalid, stats=stats))
    if stats.skipped:
        print(f"skipped {stats.skipped} invalid lines of {stats.read}; first: {stats.first_errors[0]}",
              file=sys.stderr)
    if not pairs:
        raise DataError(source.path, 0, "(file)", "no pairs to read")
    return pairs, schema, stats


def _describe(config: Config, schema) -> str:
    guide = api.guide_for(config, schema)
    return f"guide {Path(guide).name}" if guide else f"untuned {config.model}, zero-shot prompt {config.prompt}"


def cmd_demo(args: argparse.Namespace, config: Config) -> None:
    pairs, schema, _ = _read(config, str(DEMO_DATA), require_label=True, schema_name=config.schema)
    start = time.perf_counter()
    predictions = api.extract(pairs, config=config)
    seconds = time.perf_counter() - start
    print(f"collab demo: {len(pairs)} pairs, schema {schema.id}, {_describe(config, schema)}\n")
    correct = 0
    for pair, pred in zip(pairs, predictions):
        mark = "ok" if pred.relation == pair.relation else "--"
        correct += pred.relation == pair.relation
        print(f"{mark} {pair.text}\n   {pair.head.text} -> {pair.tail.text}: {pred.relation} "
              f"(p={pred.confidence:.2f}, margin {pred.margin:.2f}; expected {pair.relation})")
    print(f"\n{correct}/{len(pairs)} as expected; {len(pairs) / seconds:.1f} pairs/s including model load")


def cmd_predict(args: argparse.Namespace, config: Config) -> None:
    from .predict import run_predict

    schema = load_schema(config.schema)
    summary = run_predict(config, args.data, args.out, dry_run=args.dry_run)
    if summary.get("dry_run"):
        print(f"dry run, nothing sent: {summary['escalated']} of {summary['pairs']} pairs would be escalated "
              f"({summary['escalation_rate']:.1%}) to {summary['model']}: {summary['prompt_tokens']} prompt tokens "
              f"(estimated), at most {summary['completion_tokens_at_most']} completion tokens, at most "
              f"${summary['estimated_cost_at_most']:.4f}")
        return
    rate = f"; {summary['predicted'] / summary['seconds']:.2f} pairs/s" if summary["predicted"] and summary["seconds"] else ""
    print(f"wrote {summary['pairs']} predictions to {args.out} (schema {schema.id}, {_describe(config, schema)}{rate})")
    if "escalation" in summary:
        e, cache = summary["escalation"], summary["cache"]
        print(f"escalated {e['escalated']} of {e['pairs']} predicted pairs to {config.llm_model}: {e['llm_valid']} valid "
              f"answers, {e['llm_invalid']} invalid and {e['llm_failed']} failed requests (guide's answer kept), "
              f"{e['budget_skipped']} over budget; "
              f"{e['calls']} LLM calls, {e['prompt_tokens']}+{e['completion_tokens']} tokens, ${e['cost']:.4f}; "
              f"cache {cache['hits']} hits, {cache['misses']} misses; routes {e['routes']}; summary: "
              f"{args.out}.summary.json")


def cmd_merge(args: argparse.Namespace, config: Config) -> None:
    """Re-merge saved guide and LLM answers under another mode or threshold; no model is called."""
    from .data import read_predictions
    from .files import atomic_write_text
    from .merge import MergeSettings, remerge, weak_labels

    schema = load_schema(config.schema)
    weak: frozenset[str] = frozenset()
    predicted: frozenset[str] = frozenset()
    if config.merge in ("weak_list", "slm_types"):
        from .predict import dev_profile

        guide = api.guide_for(config, schema)
        if guide is None:
            raise ValueError(f"merge {config.merge} needs the guide's dev profile: give --guide")
        profile = dev_profile(config, schema, api.scorer_for(config, schema), guide)
        weak = frozenset(weak_labels(profile.per_label_f1, config.weak_k, schema.negative))
        predicted = frozenset(profile.predicted)
    settings = MergeSettings(config.merge, h=config.merge_h, weak=weak, slm_types=predicted)
    records = list(remerge(read_predictions(args.pred), settings, schema.negative, config.escalate_threshold))
    atomic_write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    routes = {name: sum(r["route"] == name for r in records) for name in ("slm", "llm", "merged")}
    print(f"wrote {len(records)} predictions to {args.out} (merge {config.merge}; routes {routes})")


def cmd_train(args: argparse.Namespace, config: Config) -> None:
    import torch

    from guides.guide import train_guide

    schema = load_schema(config.schema)
    if config.threads:
        torch.set_num_threads(config.threads)
    four_bit = torch.cuda.is_available() if config.four_bit is None else config.four_bit
    values = {name: getattr(args, name) for name in TRAIN_FLAGS if hasattr(args, name)}
    settings = TrainSettings.from_dict({**values, "four_bit": four_bit, "seed": config.seed})
    train_spec = args.data or datasets.split_spec(schema, "train")
    dev_spec = args.dev or datasets.split_spec(schema, "dev")
    if args.kind == "encoder":
        _train_encoder(config, schema, train_spec, dev_spec, args.out, values)
        return
    meta = train_guide(config, train_spec, dev_spec, args.out, settings, max_steps=args.max_steps)
    if meta.get("dev"):
        dev = meta["dev"]
        print(f"guide written to {args.out}: dev micro-F1 {dev['micro_f1']:.4f}, temperature {meta['temperature']}, "
              f"ECE {dev['ece_before']:.4f} -> {dev['ece_after']:.4f}")


def _train_encoder(config: Config, schema, train_spec: str, dev_spec: str, out: str, given: dict) -> None:
    """The encoder guide keeps its own defaults (guides.encoder.EncoderSettings); flags given override them."""
    from guides.encoder import EncoderSettings, calibrate_encoder, train_encoder

    known = {f for f in EncoderSettings.__dataclass_fields__}
    unused = sorted(k for k in given if k not in known)
    if unused:
        raise ValueError(f"train --kind encoder does not use {', '.join(flag(k) for k in unused)}")
    convert = {"int": lambda v: int(float(v)), "float": float}
    overrides = {k: convert.get(EncoderSettings.__dataclass_fields__[k].type, str)(v) for k, v in given.items()}
    name = schema.id.rsplit(".v", 1)[0]
    train, _, _ = _read(config, train_spec, require_label=True, schema_name=name)
    dev, _, _ = _read(config, dev_spec, require_label=True, schema_name=name)
    train_encoder(train, dev, schema.label_names, out, seed=config.seed, schema=schema,
                  threads=config.threads or None, **overrides)
    meta = calibrate_encoder(out, dev, schema)
    print(f"encoder guide written to {out}: dev micro-F1 {meta['dev']['micro_f1']:.4f}, temperature "
          f"{meta['temperature']}, ECE {meta['dev']['ece_before']:.4f} -> {meta['dev']['ece_after']:.4f}")


def cmd_eval(args: argparse.Namespace, config: Config) -> None:
    result = api.evaluate(args.gold, args.pred, schema=args.schema_name, config=config)
    if args.report:
        from .report import write_report
        summary = write_report(result, Path(args.report))
        print(f"report: {summary}", file=sys.stderr)
    if args.json:
        _print_json(result)
        return
    print(f"n={result['n']}  micro P/R/F1 {result['micro_p']:.4f} / {result['micro_r']:.4f} / "
          f"{result['micro_f1']:.4f}  macro-F1 {result['macro_f1']:.4f}")
    if result.get("head_micro_f1") is not None:
        print(f"head micro-F1 {result['head_micro_f1']:.4f}  long-tail micro-F1 {result['tail_micro_f1']:.4f}")
    for label, row in sorted(result["per_label"].items()):
        print(f"  {label:32s} P {row['p']:.3f}  R {row['r']:.3f}  F1 {row['f1']:.3f}  support {row['support']}")


def cmd_datasets(args: argparse.Namespace, config: Config) -> None:
    root = datasets.datasets_root(config.shared)
    rows = {str(path.relative_to(root)): datasets.count_file(path) for path in datasets.re_files(config.shared)}
    if args.json:
        _print_json(rows)
        return
    for name, row in rows.items():
        print(f"{name}: {row['ok']} ok, {row['bad']} bad, {row['labels']} labels, splits {row['splits']}")
    print(f"total: {sum(r['ok'] for r in rows.values())} RE examples ok, {sum(r['bad'] for r in rows.values())} bad")


def cmd_labels(args: argparse.Namespace, config: Config) -> None:
    schema = load_schema(config.schema)
    split = datasets.head_tail(schema, coverage=config.tail_coverage, shared=config.shared,
                               cache_dir=config.cache_dir) if schema.train_data else None
    rows = []
    for label in schema.labels:
        group = None if split is None or label.name == schema.negative else (
            "head" if label.name in split["head"] else "tail")
        rows.append({"label": label.name, "direction": label.direction, "inverse": label.inverse,
                     "group": group, "train_count": (split or {}).get("counts", {}).get(label.name, 0)})
    if args.json:
        _print_json({"schema": schema.id, "fingerprint": schema.fingerprint, "labels": rows,
                     "head": split and split["head"], "tail": split and split["tail"]})
        return
    print(f"{schema.id} ({schema.fingerprint[:12]}): {schema.description}")
    if split:
        print(f"head/long-tail from {split['train_data']} at {split['coverage']:.0%} coverage")
    for row in rows:
        print(f"  {row['label']:30s} {row['direction']:9s} {row['group'] or '':5s} {row['train_count']:6d}"
              f"  {'inverse ' + row['inverse'] if row['inverse'] else ''}")


def cmd_validate(args: argparse.Namespace, config: Config) -> None:
    schema = args.schema_name
    pairs, schema_obj, stats = _read(config, args.data, require_label=args.labelled, schema_name=schema)
    print(f"{args.data}: {stats.kept} pairs ok, {stats.skipped} invalid lines skipped, "
          f"{stats.dropped} dropped by the label mapping"
          + (f"; labels checked against {schema_obj.id}" if schema_obj else ""))


def _guide_distributions(path: str, pairs) -> list[dict[str, float]]:
    """Each pair's guide distribution from a prediction file, in the pairs' order."""
    from .data import read_distributions

    found = read_distributions(path)
    missing = [p.id for p in pairs if p.id not in found]
    if missing:
        raise DataError(path, 0, "id", f"{len(missing)} pairs have no prediction, e.g. {missing[0]!r}")
    return [found[p.id] for p in pairs]


def cmd_eval_retrieval(args: argparse.Namespace, config: Config) -> None:
    from .embed import SentenceEmbedder
    from .retrieval import Retriever, evaluate_retrieval

    pairs, schema, _ = _read(config, args.data, require_label=True, schema_name=config.schema)
    guides = _guide_distributions(args.guide_pred, pairs) if args.guide_pred else None
    embedder = SentenceEmbedder(args.embedder, batch_size=config.batch_size, threads=config.threads,
                                cache_dir=config.cache_dir)
    retriever = Retriever(schema, embedder, train=args.train, shared=config.shared, cache_dir=config.cache_dir,
                          index=config.index)
    result = {"schema": schema.id, "embedder": embedder.name,
              **evaluate_retrieval(retriever, pairs, k=args.k, mass=args.mass, demos=args.demos, guides=guides)}
    if args.json:
        _print_json(result)
        return
    print(f"n={result['n']}  candidate recall {result['candidate_recall']:.4f} with "
          f"{result['mean_candidates']:.2f} candidates on average (k={args.k}, mass {args.mass}, {config.index} index, "
          f"{embedder.name})")
    print("recall of each source before the cut: " + ", ".join(
        f"{name} {value:.4f}" for name, value in result["reason_recall"].items()))
    print(f"gold label among the {args.demos} demonstrations: {result['demo_label_recall']:.4f}")


def _book_files(specs: list[str]) -> list[Path]:
    """Files, folders (their *.txt) and globs, in the order given, each once."""
    import glob

    found: list[Path] = []
    seen: set[Path] = set()
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            matches = sorted(path.glob("*.txt"))
        elif path.exists():
            matches = [path]
        else:
            matches = [Path(m) for m in sorted(glob.glob(spec))]
        if not matches:
            raise FileNotFoundError(f"{spec}: no such book file, folder or glob match")
        for match in matches:
            if match.resolve() not in seen:
                seen.add(match.resolve())
                found.append(match)
    return found


def cmd_books(args: argparse.Namespace, config: Config) -> None:
    from .predict import privacy_context

    with privacy_context(config, Path(args.out) / "summary.json") as audit_path:
        _run_books(args, config, audit_path)


@contextlib.contextmanager
def _book_escalation(config: Config, schema, audit_path: Path | None):
    """With --escalate: the guide's routing and an open LLM session for every book (None without)."""
    if config.escalate == "never":
        yield None
        return
    if config.backend == "ray":
        raise ValueError("books --escalate runs on the local backend for now: drop --backend ray")
    from .predict import escalation_session, llm_endpoint, routing_for

    scorer = api.scorer_for(config, schema)
    routing, merge, tuned = routing_for(config, schema, scorer, api.guide_for(config, schema))
    with llm_endpoint(config) as served, escalation_session(served, schema, scorer, routing, merge, tuned,
                                                            audit_path) as session:
        yield session
    e = session.escalator.stats
    print(f"escalated {e.escalated} of {e.pairs} pair sentences to {served.llm_model}: {e.calls} LLM calls, "
          f"{e.prompt_tokens}+{e.completion_tokens} tokens; reply cache {session.cache_stats}", file=sys.stderr)


def _run_books(args: argparse.Namespace, config: Config, audit_path: Path | None = None) -> None:
    from .book.batch import plan_jobs, run_books
    from .book.stages import BUNDLED_BOOK, STAGES

    if args.rerun_from and args.rerun_from not in STAGES:
        raise ValueError(f"--rerun-from {args.rerun_from}: no such stage; stages: {', '.join(STAGES)}")
    books = _book_files(args.paths) if args.paths else [BUNDLED_BOOK]
    out = Path(args.out)
    schema = load_schema(config.schema)
    aliases = None
    if config.aliases:
        from .book.characters import load_aliases
        aliases = load_aliases(config.aliases)
    print(f"collab books: {len(books)} book(s) -> {out}; schema {schema.id}, {_describe(config, schema)}"
          f"{', backend ray' if config.backend == 'ray' else ''}", file=sys.stderr)
    with _book_escalation(config, schema, audit_path) as escalation:
        results = run_books(plan_jobs(books, out), config, aliases, args.rerun_from, escalation)
    summaries = [r["summary"] for r in results if "summary" in r]
    failed = [r["failed"] for r in results if "failed" in r]
    for failure in failed:
        print(f"skipped: {failure['error']}", file=sys.stderr)
    from .files import atomic_write_text
    atomic_write_text(out / "summary.json", json.dumps({"books": summaries, "failed": failed}, indent=1,
                                                       ensure_ascii=False) + "\n")
    for summary in summaries:
        counts = summary["counts"]
        print(f"\n{summary['book']}: {counts['characters']} characters, {counts['pair_mentions']} pair mentions, "
              f"{counts['edges']} relations in {summary['seconds']:.0f}s (" + ", ".join(
                  f"{name} {row['seconds']:.0f}s{' cached' if row['cached'] else ''}"
                  for name, row in summary["stages"].items()) + ")")
        print("  top characters: " + ", ".join(f"{name} ({n})" for name, n in summary["top_characters"]))
        for source, relation, target, confidence, support, basis in summary["top_relations"]:
            # support counts the sentences whose top answer is the relation; an edge kept because the pair meets
            # often (edges.py, `frequent`) has none, and saying "0 sentences" beside its evidence misleads.
            said = ("from the names: one family name" if basis == "names"
                    else f"top answer in {support} sentence{'s' if support > 1 else ''}" if support
                    else "no sentence's top answer: the pair meets often")
            print(f"  {source} --{relation}--> {target}  (confidence {confidence:.2f}, {said})")
        names = [str(Path(p).relative_to(summary["out"])) for p in summary["files"].values()]
        print(f"  files: {summary['out']}/ (" + ", ".join(names) + ", run.json)")
    print(f"\n{len(summaries)} book(s) done, {len(failed)} failed; summary: {out / 'summary.json'}")
    if failed and not summaries:
        raise BookError(f"no book could be processed; first: {failed[0]['error']}")


def _label_mapping(spec: str | None) -> dict[str, str | None] | None:
    """--mapping: `conan` (the CONAN dataset's own file) or a JSON/YAML file {gold label: schema label or null}."""
    import yaml

    from .book.graph_eval import load_conan_mapping

    if spec is None:
        return None
    if spec == "conan":
        return load_conan_mapping()
    try:
        mapping = yaml.safe_load(Path(spec).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{spec}: cannot read the label mapping: {e}".replace("\n", " ")) from None
    if not isinstance(mapping, dict) or not all(isinstance(v, (str, type(None))) for v in mapping.values()):
        raise ValueError(f"{spec}: a label mapping is a table of gold label -> schema label (or null to drop)")
    return mapping


def cmd_eval_graph(args: argparse.Namespace, config: Config) -> None:
    from .book.graph_eval import load_gold, score_graph

    pred_path = Path(args.pred)
    if pred_path.is_dir():
        pred_path = pred_path / "graph.json"
    try:
        pred = json.loads(pred_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{pred_path}: cannot read the predicted graph: {e}") from None
    result = score_graph(load_gold(args.gold), pred, schema=load_schema(config.schema),
                         mapping=_label_mapping(args.mapping))
    if args.json:
        _print_json({k: v for k, v in result.items() if k != "matched"})
        return
    for name in ("characters", "pairs", "relations"):
        row = result[name]
        print(f"{name:10s} P {row['precision']:.4f}  R {row['recall']:.4f}  F1 {row['f1']:.4f}  "
              f"(tp {row['tp']}, fp {row['fp']}, fn {row['fn']})")
    if result.get("gold_dropped"):
        print(f"{result['gold_dropped']} gold relations dropped by the label mapping")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_pipeline.py", description=(
        "collab: a small model guides a large one to extract relations, and turns books into character graphs."))
    parser.add_argument("--config", help="TOML or YAML file with settings (flags override it)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str, flags: list[str], defaults: dict | None = None) -> argparse.ArgumentParser:
        """`defaults`: this command's own defaults for Config fields; a config file and flags override them."""
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--config", default=argparse.SUPPRESS, help="TOML or YAML file with settings")
        add_config_flags(sub, flags, defaults=defaults)
        sub.set_defaults(func=func, command_defaults=defaults or {})
        return sub

    command("demo", cmd_demo, "predict relations for a few bundled example sentences and print them",
            MODEL_FLAGS)
    sub = command("predict", cmd_predict, "predict a relation for every pair of a JSONL file; with --escalate, "
                  "ask an LLM where the guide is unsure and merge the answers", ["shared", "skip_invalid", "seed",
                                                                                  "tail_coverage", *MODEL_FLAGS,
                                                                                  *ESCALATION_FLAGS])
    sub.add_argument("--data", required=True, help="JSONL file, or a staged split such as semeval:test")
    sub.add_argument("--out", required=True, help="prediction JSONL to write")
    sub.add_argument("--dry-run", action="store_true", help="with --escalate: say how many pairs would be "
                     "escalated, with tokens and estimated cost, and send nothing")
    sub = command("merge", cmd_merge, "re-merge a prediction file's saved guide and LLM answers with another "
                  "mode or threshold (no model calls)", ["shared", "cache_dir", "schema", "guide", "model",
                                                         "batch_size", "merge", "merge_h", "weak_k",
                                                         "escalate_threshold"])
    sub.add_argument("--pred", required=True, help="prediction JSONL written by predict --escalate")
    sub.add_argument("--out", required=True, help="merged prediction JSONL to write")
    sub = command("train", cmd_train, "tune a LoRA guide on a schema's training data, then calibrate it on dev",
                  ["shared", "schema", "model", "prompt", "four_bit", "threads", "seed", "cache_dir",
                   "tail_coverage", "index"], defaults={"prompt": "slm/guide.v1"})
    sub.add_argument("--data", help="training JSONL or staged split (default: the schema's training data)")
    sub.add_argument("--dev", help="dev JSONL or staged split for calibration (default: the schema's dev split)")
    sub.add_argument("--out", required=True, help="guide folder to write (a rerun resumes from its checkpoint)")
    sub.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (resume later)")
    sub.add_argument("--kind", choices=["slm", "encoder"], default="slm", help="slm: LoRA on the small language "
                     "model, labels scored as text; encoder: the MiniLM entity-marker classifier (fast; the "
                     "training settings' epochs, lr, batch size, max length and LoRA rank apply) [default: slm]")
    add_config_flags(sub, TRAIN_FLAGS, TrainSettings)
    sub = command("eval", cmd_eval, "score predictions against gold: positive-class micro-F1 and more",
                  ["shared", "cache_dir", "tail_coverage"])
    sub.add_argument("--gold", required=True, help="gold JSONL, or a staged split such as semeval:test")
    sub.add_argument("--pred", required=True, help="prediction JSONL (id, relation, ...)")
    sub.add_argument("--schema", dest="schema_name", default=None,
                     help="schema of the labels (default: the staged dataset's)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_argument("--report", metavar="DIR", help="also write a confusion heat map, F1 bars and summary.md")
    sub = command("datasets", cmd_datasets, "list the staged relation-extraction files with their counts",
                  ["shared"])
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = command("labels", cmd_labels, "show a schema's labels, directions and head/long-tail split",
                  ["schema", "shared", "cache_dir", "tail_coverage"])
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = command("validate", cmd_validate, "check a JSONL file of pairs and report what is wrong",
                  ["shared", "skip_invalid"])
    sub.add_argument("--data", required=True, help="JSONL file, or a staged split such as dialogre:test")
    sub.add_argument("--schema", dest="schema_name", default=None, help="check labels against this schema")
    sub.add_argument("--labelled", action="store_true", help="require a relation on every line")
    sub = command("eval-retrieval", cmd_eval_retrieval,
                  "measure guide retrieval: how often the gold label is among the candidate relations",
                  ["shared", "schema", "cache_dir", "batch_size", "threads", "index"])
    sub.add_argument("--data", required=True, help="labelled JSONL, or a staged split such as semeval:dev")
    sub.add_argument("--k", type=int, default=CANDIDATES, help="at most this many candidates per pair, "
                     f"no_relation included [default: {CANDIDATES}]")
    sub.add_argument("--mass", type=float, default=CANDIDATE_MASS, help="keep the fewest best candidates (at "
                     "most k) that hold this share of the evidence score, so pairs the evidence agrees on get "
                     f"fewer; 1 keeps k [default: {CANDIDATE_MASS}]")
    sub.add_argument("--demos", type=int, default=5, help="demonstrations chosen per pair [default: 5]")
    sub.add_argument("--train", help="training JSONL or staged split the demonstrations come from "
                     "[default: the schema's training data]")
    sub.add_argument("--embedder", default=None, help="local sentence-transformers folder "
                     "[default: the packaged all-MiniLM-L6-v2]")
    sub.add_argument("--guide-pred", help="prediction JSONL whose distributions stand for the guide's answer")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = command("books", cmd_books, "books to character relation graphs (with no PATH: the bundled novel)",
                  ["shared", "cache_dir", "schema", "guide", "guide_url", "guide_served_model", "model", "prompt",
                   "four_bit", "batch_size", "threads", "index", "min_mentions", "aliases", "pronouns", "window",
                   "max_pair_mentions", "edge_threshold", "edge_triggers", "edge_frequent", "family_names", "exports",
                   "chapter_graphs", "backend", "ray_address", "ray_pairs_per_task", *ESCALATION_FLAGS],
                  defaults={"schema": "characters"})
    sub.add_argument("paths", nargs="*", metavar="PATH", help="plain-text books: files, folders or globs")
    sub.add_argument("--out", default="out/books", help="output folder, one subfolder per book [default: out/books]")
    sub.add_argument("--rerun-from", metavar="STAGE", help="recompute this stage and the ones after it "
                     "(text, characters, pairs, relations, edges, graph)")
    from .prompt_builder import add_show_prompt_arguments, cmd_show_prompt
    sub = command("show-prompt", cmd_show_prompt, "print the exact prompt a pair would be sent with, within a "
                  "token budget (for debugging, and to audit what leaves the machine)",
                  ["shared", "schema", "cache_dir", "batch_size", "threads", "skip_invalid", "index"])
    add_show_prompt_arguments(sub)
    sub = command("eval-graph", cmd_eval_graph, "score a book's graph.json against a gold character graph: "
                  "characters, untyped pairs and typed relations (P/R/F1)", ["schema"],
                  defaults={"schema": "characters"})
    sub.add_argument("--gold", required=True, help="gold JSON {characters:[{id,name,aliases}], "
                     "relations:[{head,tail,label}]}")
    sub.add_argument("--pred", required=True, help="a book's graph.json, or its output folder")
    sub.add_argument("--mapping", help="gold label -> schema label: a JSON/YAML file, or `conan` for the CONAN "
                     "gold graphs' own mapping")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        args.func(args, config)
    except (DataError, SchemaError, FileNotFoundError, ValueError, ModelError, LLMError, LocalLLMError) as e:
        # BookError and PrivacyError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
