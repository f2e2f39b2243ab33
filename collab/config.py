"""One typed configuration: defaults on one screen, loadable from TOML or YAML, CLI flags map one to one.

Every field below is also a command-line flag (`cache_dir` → `--cache-dir`); a flag given on the command
line overrides the value from `--config FILE`, which overrides the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    __pydantic_config__ = ConfigDict(extra="forbid")

    shared: Path | None = _opt(None, "folder holding datasets/ (default: ../shared beside the repo, or $COLLAB_SHARED)")
    cache_dir: Path | None = _opt(None, "cache root for models, indexes, LLM replies and stage outputs "
                                        "(default: the user cache dir, or $COLLAB_CACHE_DIR)")
    schema: str = _opt("semeval", "relation schema: a name in prompts/schemas (semeval, conll04, characters) or a YAML path")
    model: str = _opt("smollm2", "small model: smollm2, gemma3-270m, a .gguf file or a Hugging Face model folder")
    guide: str = _opt("auto", "tuned guide: a shipped name (guides/adapters), a guide folder, 'auto' (the shipped "
                              "guide for this schema and model, if any) or 'none' (untuned, zero-shot)")
    guide_url: str | None = _opt(None, "score with the guide served at this OpenAI-compatible completions endpoint "
                                       "that echoes prompt logprobs (vLLM with the guide's LoRA; README: GPU serving)")
    guide_served_model: str | None = _opt(None, "the guide's model name at guide_url (default: its folder's name)")
    prompt: str = _opt("slm/schema_enum.v1", "prompt template for the small model without a guide, and for training "
                                             "(prompts/<group>/<name>.v<N>.yaml)")
    four_bit: bool | None = _opt(None, "small model in 4-bit NF4 (bitsandbytes); unset: on with CUDA, off on CPU, "
                                       "where 4-bit trains 7x slower than plain LoRA")
    batch_size: int = _opt(8, "pairs per batch")
    threads: int = _opt(0, "CPU threads for torch, the books' spaCy processes and a local LLM server "
                           "(0 = every core this process may use)")
    seed: int = _opt(13, "random seed")
    skip_invalid: bool = _opt(False, "skip and count invalid input lines instead of stopping at the first")
    tail_coverage: float = _opt(0.8, "head labels = most frequent labels covering this share of positive training pairs")
    index: Literal["flat", "hnsw"] = _opt("flat", "training demonstrations searched exactly (flat) or by approximate "
                                                  "HNSW, for sets of about a million pairs (BENCHMARKS.md)")
    # books
    min_mentions: int = _opt(3, "books: characters mentioned fewer times are dropped")
    aliases: Path | None = _opt(None, "books: JSON/YAML file {name: [alias, ...]} that overrides alias clustering")
    pronouns: bool = _opt(True, "books: he/she/his/her count as a mention of the nearest name of that gender")
    window: int = _opt(0, "books: pair characters up to this many sentences apart in a paragraph (0: same sentence)")
    max_pair_mentions: int = _opt(40, "books: at most this many sentences per character pair are classified, "
                                      "spread over the book (0: all)")
    edge_threshold: float = _opt(0.9, "books: keep a relation when its mean probability over the pair's "
                                      "sentences reaches this")
    edge_triggers: bool = _opt(True, "books: a sentence supports a relation only when it holds one of the "
                                      "label's trigger words (schema file)")
    edge_frequent: float = _opt(0.01, "books: a pair named together in at least this share of the book's pair "
                                     "sentences keeps its most confident relation even under edge_threshold (0: off)")
    family_names: bool = _opt(True, "books: two characters of one surname named together are kin: a family edge "
                                    "typed by their titles (Mr. and Mrs. X: spouses; Mrs. X and Jane X: parent); "
                                    "of different surnames, they are no parent and child or siblings")
    exports: str = _opt("json,graphml,gexf,csv,html,png", "books: comma-separated export formats")
    chapter_graphs: bool = _opt(False, "books: also one graph per chapter, from that chapter's sentences only "
                                       "(chapters/NNN/, listed in chapters/index.json)")
    backend: Literal["local", "ray"] = _opt("local", "books: run in this process, or one Ray task per book")
    ray_address: str | None = _opt(None, "books with --backend ray: a cluster's address (default: a local instance)")
    ray_pairs_per_task: int = _opt(256, "books with --backend ray: a book's pair sentences are classified in "
                                        "tasks of this many, so one long book spreads over the workers (0: not split)")
    # escalation to a large model
    escalate: Literal["never", "auto", "always"] = _opt("never", "ask the LLM: never, auto (pairs the guide is "
                                                                 "unsure of, and long-tail answers) or always")
    escalate_rate: float = _opt(0.2, "auto: escalate the guide's least confident pairs, this share of the dev split")
    escalate_precision: float | None = _opt(None, "auto: instead, escalate below the confidence where the guide's "
                                                  "dev precision falls under this")
    escalate_threshold: float | None = _opt(None, "auto: escalate below this guide confidence (overrides the two above)")
    escalate_margin: float = _opt(0.0, "auto: also escalate when the guide's lead over its runner-up is below this")
    merge: str = _opt("confident_slm", "how answers merge: union, confident_slm, weak_list, slm_types, weighted or "
                                       "llm (collab/merge.py; the default was chosen on SemEval dev, BENCHMARKS.md)")
    merge_h: float = _opt(0.75, "merge confident_slm: the guide's positive answers at least this confident stand")
    weak_k: int = _opt(1, "merge weak_list: the guide's K lowest dev-F1 labels are the LLM's to decide")
    llm_base_url: str = _opt("http://127.0.0.1:8080/v1", "OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama)")
    llm_model: str = _opt("local", "model id at the endpoint")
    llm_api_key_env: str = _opt("OPENAI_API_KEY", "environment variable holding the API key (unset: no key)")
    llm_template: str = _opt("llm/guide.v1", "the LLM's prompt template (prompts/)")
    llm_json: Literal["auto", "schema", "object", "none"] = _opt("auto", "constrain replies with a JSON schema, "
                                                                         "JSON mode, or not (auto: the best the endpoint takes)")
    llm_temperature: float = _opt(0.0, "LLM sampling temperature (the seed is --seed)")
    llm_max_tokens: int = _opt(128, "LLM reply length limit")
    llm_timeout: float = _opt(60.0, "seconds per LLM request")
    llm_retries: int = _opt(3, "retries per request on 429, 5xx and timeouts, with backoff (Retry-After honoured)")
    llm_repairs: int = _opt(2, "re-asks after an invalid reply before the guide's answer stands")
    llm_concurrency: int = _opt(4, "LLM requests in flight at once")
    llm_candidates: int = _opt(7, "at most this many candidate labels in the LLM prompt, no_relation included")
    llm_candidate_mass: float = _opt(0.85, "fewer candidates where the evidence agrees: the fewest best that hold "
                                     "this share of the evidence score (1 = always llm_candidates)")
    llm_demos: int = _opt(4, "retrieved demonstrations per LLM prompt")
    llm_prompt_budget: int | None = _opt(2048, "prompt token budget: demonstrations, then definitions, are cut to fit")
    max_llm_calls: int | None = _opt(None, "stop escalating after this many LLM requests (cached replies are free)")
    max_cost: float | None = _opt(None, "stop escalating before the estimated spend passes this many dollars")
    prices: Path | None = _opt(None, "price table, YAML {model: {input: $/Mtok, output: $/Mtok}} (default: free)")
    privacy: Literal["off", "local"] = _opt("off", "local: nothing leaves the machine (loopback endpoints only, "
                                                   "offline models, every request in an audit log)")
    audit_log: Path | None = _opt(None, "JSONL of every LLM request (default with --privacy local: beside the output)")
    local_llm: Path | None = _opt(None, "serve this GGUF (or packaged smollm2, gemma3-270m) with llama.cpp on a "
                                        "loopback port for the run, and escalate to it")

    def __post_init__(self) -> None:
        if not 0.0 <= self.edge_frequent < 1.0:  # it was a sentence count before 2026-11-28
            raise ValueError(f"edge_frequent is a share of a book's pair sentences, from 0 up to 1, "
                             f"not {self.edge_frequent}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Config:
        try:
            return TypeAdapter(cls).validate_python(values)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])  # empty for a check across fields (__post_init__)
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"{source}: {where}: {message}" if where else f"{source}: {message}") from None

    @classmethod
    def load(cls, path: str | Path | None = None, defaults: dict[str, Any] | None = None, **overrides: Any) -> Config:
        """`defaults` (a command's own) < the file at `path` < `overrides` (flags)."""
        values: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            try:
                text = path.read_text(encoding="utf-8")
                values = tomllib.loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
            except (OSError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
                raise ValueError(f"{path}: cannot read config: {e}".replace("\n", " ")) from None
            if not isinstance(values, dict):
                raise ValueError(f"{path}: a config file must hold a table of settings")
        return cls.from_dict({**(defaults or {}), **values, **overrides}, str(path or "command line"))

    def replace(self, **changes: Any) -> Config:
        return Config.from_dict({**dataclasses.asdict(self), **changes})

    @property
    def cores(self) -> int:
        """`threads`, or where it is 0 the cores this process may run on: its affinity mask, which a container's
        cpuset narrows where the machine's core count would not."""
        if self.threads:
            return self.threads
        if hasattr(os, "sched_getaffinity"):  # not on macOS or Windows
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainSettings:
    """Guide training hyperparameters: the seed paper's setting for its smallest model, except the learning
    rate (2e-4: a CPU budget of about one epoch leaves too few steps for 1e-4; see the guide's card) and LoRA
    dropout (0, not 0.05: without its random masks CPU training runs 1.2-1.4x faster, and one SemEval epoch
    without it scored dev micro-F1 0.851 against 0.856), and the batch (one pass of up to 16 pairs, not 8: passes
    of 16 short pairs run at 0.72 of the CPU's matmul peak against 0.60 and SemEval's and CoNLL04's dev micro-F1
    held, while long excerpts stay at passes and batches of 8; BENCHMARKS.md, "Guide training speed")."""
    __pydantic_config__ = ConfigDict(extra="forbid")

    head_only: bool = _opt(False, "train on the head labels only, long-tail pairs relabelled `long_tail` (the "
                                  "escalation signal); default: all labels")
    epochs: float = _opt(1.0, "passes over the training data (fractions allowed)")
    lr: float = _opt(2e-4, "peak learning rate (linear warm-up and decay)")
    batch_size: int | None = _opt(None, "pairs per optimiser step; unset: one forward pass (micro_batch)")
    micro_batch: int | None = _opt(None, "pairs per forward pass; batch_size must be a multiple (gradient "
                                         "accumulation); unset: the largest divisor of batch_size (of 16 when "
                                         "that is unset too) that keeps a pass within guides.train.PASS_TOKENS")
    lora_r: int = _opt(16, "LoRA rank")
    lora_alpha: int = _opt(32, "LoRA alpha")
    lora_dropout: float = _opt(0.0, "LoRA dropout")
    weight_decay: float = _opt(0.01, "AdamW weight decay")
    warmup: float = _opt(0.03, "share of steps spent warming up")
    max_length: int = _opt(512, "longer examples lose the start of their prompt (counted in the card)")
    four_bit: bool = _opt(False, "QLoRA: train over NF4 base weights")
    seed: int = _opt(13, "seed for LoRA init and data order")
    checkpoint_every: int = _opt(50, "optimiser steps between checkpoints")
    targets: tuple[str, ...] = _opt(LORA_TARGETS, "module names that get LoRA adapters")

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.micro_batch is not None and (self.micro_batch < 1 or (self.batch_size or self.micro_batch)
                                             % self.micro_batch):
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of micro_batch {self.micro_batch}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        try:
            return TypeAdapter(cls).validate_python(values)
        except ValidationError as e:
            first = e.errors()[0]
            raise ValueError(f"training setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


# Training flags of their own; seed and 4-bit come from Config, whose batch size is the calibration's scoring.
TRAIN_FLAGS = ["head_only", "epochs", "lr", "batch_size", "micro_batch", "lora_r", "lora_alpha", "lora_dropout",
               "weight_decay", "warmup", "max_length", "checkpoint_every"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, names: list[str], cls: type = Config,
                     defaults: dict[str, Any] | None = None) -> None:
    """Add one flag per named field of `cls`; absent flags stay absent so the config file's value holds."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f = fields[name]
        help_text = f"{f.metadata['help']} [default: {(defaults or {}).get(name, f.default)}]"
        # Values go in as strings; pydantic converts them to the field's type and reports bad ones.
        if f.type in ("bool", "bool | None"):
            parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag(name), dest=name, type=str, default=argparse.SUPPRESS, help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    names = {f.name for f in dataclasses.fields(Config)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return Config.load(getattr(args, "config", None), getattr(args, "command_defaults", None), **overrides)
