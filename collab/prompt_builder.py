"""Guidance prompts that fit a token budget: one pair, its candidate labels with their definitions, retrieved
demonstrations and the small model's answer (SLCoLM), rendered from a versioned template.

Over budget, the prompt is cut in a fixed order: demonstrations first, the least similar first (they are
taken best first, as the retriever ranks them); then definitions, the lowest-ranked candidate first. The
small model's top answer's definition, the negative label's and the sentence are never cut: without them
the large model cannot judge the one answer it is asked to check. A label whose definition is cut stays
allowed by name, so cutting for length never removes the gold label from the answers the model may give.
When even that bare prompt is over budget, `BudgetError` says by how much.

Tokens are counted with the target model's tokenizer where there is one (`tokenizer_counter`), else by
`estimate_tokens`, which is built to overcount BPE tokenizers on English. Per piece of text: an ASCII letter
run counts ceil(len / 3), plus one when capitalised (names split into more pieces: "Wolfshiem" is four
tokens), or ceil(len / 2) when all capitals ("IZVESTIYA"); every digit, punctuation mark and newline one,
as does a space not followed by a letter (tokenizers that split digits keep " 1986" as five tokens); a
non-ASCII character its UTF-8 bytes (byte-level BPE never needs more). Then MESSAGE_OVERHEAD per message
and PROMPT_OVERHEAD once. On 300 SemEval and 300 CoNLL04 dev pairs it lands 1.5-2.0x above SmolLM2's count
for whole prompts (1.7x on average); over the staged corpora's sentences, only a few all-capital
headlines (`Moscow KRASNAYA ZVEZDA`) count below SmolLM2 on their own. Plain chars / 3 comes within 4% of
undercounting whole prompts: labels and entity markers such as `Cause-Effect(e1,e2)` or `[/E1]` run below
two characters per token. Where the budget binds, count with the tokenizer instead.

Templates say how they take demonstrations with a top-level key: `demonstrations: inline` hands them to the
template as `examples` (the LLM guide shows them inside its user turn, with the small model's answer on
each); the default, `turns`, makes each an earlier user/assistant exchange (k-shot prompts for small models).
"""
from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from . import datasets, embed
from .config import Config
from .data import DataError, Pair, read_distributions
from .prompts import PromptError, PromptTemplate, RenderedPrompt, load_template
from .retrieval import CANDIDATE_MASS, CANDIDATES, Candidate, Demonstration, Retriever, _same_example, mark_mentions
from .schema import Schema, load_schema

Messages = list[dict[str, str]]
TokenCounter = Callable[[Messages], int]
Distribution = Mapping[str, float]

MESSAGE_OVERHEAD = 8  # role header and end-of-turn tokens of one chat message (SmolLM2 uses 5, Llama 3 about 5)
# Once per prompt: the assistant header the generation prompt opens, and the preamble some chat templates
# write on their own (SmolLM2 adds a 15-token default system message when none is given, Llama 3.1 a date).
PROMPT_OVERHEAD = 32
DEMONSTRATION_MODES = ("inline", "turns")
_PIECES = re.compile(r"[A-Za-z]+|[^A-Za-z ]| (?![A-Za-z])")


class BudgetError(PromptError):
    """The prompt cannot fit the token budget even with every droppable part dropped."""


@dataclass(frozen=True)
class Shot:
    """A demonstration with the small model's distribution on it, where the guide was run on that pair."""

    pair: Pair
    slm: Distribution | None = None


@dataclass(frozen=True)
class BuiltPrompt:
    pair_id: str
    prompt: RenderedPrompt
    tokens: int
    estimated: bool  # tokens from estimate_tokens, not a tokenizer
    budget: int | None
    slm: dict[str, Any] | None  # the small model's answer as shown: relation, confidence, runner-up
    kept: dict[str, list[str]]  # demonstrations (pair ids), definitions, labels (every allowed answer)
    dropped: dict[str, Any]  # demonstrations (how many), definitions (labels, in the order they were cut)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.pair_id, "template": self.prompt.template, "template_sha": self.prompt.sha,
                "messages": self.prompt.messages, "tokens": self.tokens,
                "token_count": "estimate" if self.estimated else "tokenizer", "budget": self.budget,
                "slm": self.slm, "kept": self.kept, "dropped": self.dropped}

    def summary(self) -> str:
        budget = f"of budget {self.budget}" if self.budget is not None else "no budget"
        dropped = (f"dropped {self.dropped['demonstrations']} demonstrations, definitions: "
                   f"{', '.join(self.dropped['definitions']) or 'none'}")
        return (f"-- {self.prompt.template}: {self.tokens} tokens "
                f"({'estimated' if self.estimated else 'tokenizer'}) {budget}; {dropped}")


# ------------------------------------------------------------------------------------------------ tokens
def _text_tokens(text: str) -> int:
    total = 0
    for piece in _PIECES.findall(text):
        if not piece.isalpha():
            total += len(piece.encode("utf-8"))
        elif piece.isupper() and len(piece) > 1:
            total += math.ceil(len(piece) / 2)
        else:
            total += math.ceil(len(piece) / 3) + piece[0].isupper()
    return total


def estimate_tokens(messages: Messages) -> int:
    """A count meant never to fall below a real tokenizer's on English (see the module notes)."""
    return PROMPT_OVERHEAD + sum(MESSAGE_OVERHEAD + _text_tokens(m["content"]) for m in messages)


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """Exact counts with a Hugging Face tokenizer: the chat template's text, generation prompt included,
    encoded without added special tokens (the template writes its own, as guides.scoring encodes prompts).
    Without a chat template: each message's tokens plus the same overheads as the estimate."""

    def encoded(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def count(messages: Messages) -> int:
        if getattr(tokenizer, "chat_template", None):
            return encoded(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return PROMPT_OVERHEAD + sum(MESSAGE_OVERHEAD + encoded(m["content"]) for m in messages)

    return count


# ------------------------------------------------------------------------------------------------ building
def slm_answer(distribution: Distribution | None) -> dict[str, Any] | None:
    """The top label with its probability and the runner-up's; ties go to the label name, for determinism."""
    if not distribution:
        return None
    ranked = sorted(((label, float(p)) for label, p in distribution.items()), key=lambda item: (-item[1], item[0]))
    runner_up = ranked[1] if len(ranked) > 1 else (None, None)
    return {"relation": ranked[0][0], "confidence": ranked[0][1],
            "runner_up": runner_up[0], "runner_up_confidence": runner_up[1]}


def _pair_vars(pair: Pair) -> dict[str, Any]:
    return {"text": pair.text, "marked": mark_mentions(pair), "head": pair.head.text, "tail": pair.tail.text,
            "head_type": pair.head.type, "tail_type": pair.tail.type}


def _allowed_labels(schema: Schema, candidates: Sequence[Candidate | str], protected: list[str]) -> list[str]:
    labels = [c.label if isinstance(c, Candidate) else c for c in candidates]
    unknown = [label for label in labels if label not in schema.label_names]
    if unknown:
        raise PromptError(f"candidate labels {unknown} are not labels of schema {schema.id}")
    return list(dict.fromkeys(labels + protected))


def _examples(pair: Pair, demonstrations: Sequence[Demonstration | Shot]) -> list[dict[str, Any]]:
    """Template variables per demonstration. The retriever already keeps dev/test pairs and the query out;
    this is the last check before a prompt leaves, because a leak here would silently inflate scores."""
    examples = []
    for demo in demonstrations:
        if demo.pair.split not in (None, "train"):
            raise PromptError(f"demonstration {demo.pair.id!r} is from split {demo.pair.split!r}; "
                              "demonstrations come only from training data")
        if _same_example(demo.pair, pair):
            raise PromptError(f"demonstration {demo.pair.id!r} is the query {pair.id!r} itself")
        slm = slm_answer(demo.slm) if isinstance(demo, Shot) else None
        examples.append({**_pair_vars(demo.pair), "id": demo.pair.id, "relation": demo.pair.relation, "slm": slm})
    return examples


def _render(template: PromptTemplate, pair: Pair, schema: Schema, labels: list[str], defined: list[str],
            examples: list[dict[str, Any]], answer: dict[str, Any] | None) -> RenderedPrompt:
    definitions = [{"label": label.name, "definition": label.definition, "triggers": list(label.triggers)}
                   for label in map(schema.label, defined)]
    context = {**_pair_vars(pair), "negative": schema.negative, "labels": labels, "slm": answer,
               "definitions": definitions, "undefined_labels": [x for x in labels if x not in defined],
               "examples": examples}
    if template.extra.get("demonstrations", "turns") == "turns":
        context["demonstrations"] = examples
    return template.render(**context)


def build_prompt(pair: Pair, *, template: str | PromptTemplate, schema: Schema,
                 candidates: Sequence[Candidate | str], demonstrations: Sequence[Demonstration | Shot],
                 slm: Distribution | None = None, budget: int | None = None,
                 count_tokens: TokenCounter | None = None) -> BuiltPrompt:
    """The prompt for one pair, cut to `budget` tokens where given (see the module notes for the order).

    `candidates` and `demonstrations` come best first (as `Retriever.candidates` / `.demonstrations` return
    them); `slm` is the small model's distribution (label → probability) for the pair. The small model's top
    answer and the negative label are added to the allowed labels when the candidates lack them."""
    template = template if isinstance(template, PromptTemplate) else load_template(template)
    mode = template.extra.get("demonstrations", "turns")
    if mode not in DEMONSTRATION_MODES:
        raise PromptError(f"{template.template}: demonstrations: {mode!r} is not one of "
                          f"{', '.join(DEMONSTRATION_MODES)}")
    answer = slm_answer(slm)
    protected = [label for label in ([answer["relation"]] if answer else []) if label in schema.label_names]
    protected.append(schema.negative)
    labels = _allowed_labels(schema, candidates, protected)
    examples = _examples(pair, demonstrations)
    defined = list(labels)
    droppable = [label for label in reversed(labels) if label not in protected]
    cut: list[str] = []
    count = count_tokens or estimate_tokens
    while True:
        prompt = _render(template, pair, schema, labels, defined, examples, answer)
        tokens = count(prompt.messages)
        if budget is None or tokens <= budget:
            break
        if examples:
            examples = examples[:-1]
        elif droppable:
            cut.append(droppable.pop(0))
            defined.remove(cut[-1])
        else:
            raise BudgetError(f"the prompt for pair {pair.id!r} needs {tokens} tokens with no demonstrations and "
                              f"only the definitions of {', '.join(defined)}; the budget is {budget}. Raise the "
                              "budget or use a shorter template")
    kept_demos = [e["id"] for e in examples]
    return BuiltPrompt(
        pair_id=pair.id, prompt=prompt, tokens=tokens, estimated=count_tokens is None, budget=budget, slm=answer,
        kept={"demonstrations": kept_demos, "definitions": defined, "labels": labels},
        dropped={"demonstrations": len(demonstrations) - len(kept_demos),
                 "definitions": cut})


# ------------------------------------------------------------------------------------------------ command
def add_show_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """The show-prompt command's own arguments (config flags come from the CLI's `command` helper)."""
    parser.add_argument("--data", required=True, help="JSONL file, or a staged split such as semeval:dev")
    parser.add_argument("--id", required=True, help="id of the pair whose prompt to show")
    parser.add_argument("--template", default="llm/guide.v1",
                        help="prompt template, prompts/<group>/<name>.v<N>.yaml [default: llm/guide.v1]")
    parser.add_argument("--k", type=int, default=CANDIDATES,
                        help=f"at most this many candidate labels, no_relation included [default: {CANDIDATES}]")
    parser.add_argument("--mass", type=float, default=CANDIDATE_MASS, help="the fewest best candidates that hold "
                        f"this share of the evidence score; 1 keeps k [default: {CANDIDATE_MASS}]")
    parser.add_argument("--demos", type=int, default=5,
                        help="at most this many demonstrations, the most similar kept [default: 5]")
    parser.add_argument("--budget", type=int, help="token budget of the prompt; over it, demonstrations and then "
                        "low-ranked definitions are dropped [default: none]")
    parser.add_argument("--tokenizer", help="count tokens with this model's tokenizer (smollm2, gemma3-270m, a "
                        ".gguf or a Hugging Face folder) [default: a conservative estimate]")
    parser.add_argument("--train", help="training JSONL or staged split the demonstrations come from "
                        "[default: the schema's training data]")
    parser.add_argument("--embedder", help="local sentence-transformers folder [default: the packaged "
                        "all-MiniLM-L6-v2]")
    parser.add_argument("--guide-pred", help="prediction JSONL whose distribution is the small model's answer "
                        "(for the pair, and for demonstrations whose ids it holds)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: messages and metadata")


def _find_pair(source: datasets.DataSource, schema: Schema, pair_id: str, skip_invalid: bool) -> Pair:
    seen = []
    for pair in source.read(schema=schema, skip_invalid=skip_invalid):
        if pair.id == pair_id:
            return pair
        seen.append(pair.id)
    shown = ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else "")
    raise DataError(source.path, 0, "id", f"no pair with id {pair_id!r} among {len(seen)} pairs; ids: "
                    f"{shown or '(none)'}")


def _tokenizer_counter(spec: str, config: Config) -> TokenCounter:
    from transformers import AutoTokenizer

    from guides.models import ensure_chat_template, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec, config.cache_dir))
    ensure_chat_template(tokenizer)
    return tokenizer_counter(tokenizer)


def cmd_show_prompt(args: argparse.Namespace, config: Config) -> None:
    """Print the exact messages a pair would be sent with (role headers and content), then one metadata
    line; with --json, `BuiltPrompt.to_json()`."""
    source = datasets.resolve(args.data, config.shared)
    schema = load_schema(config.schema)
    pair = _find_pair(source, schema, args.id, config.skip_invalid)
    predictions = read_distributions(args.guide_pred) if args.guide_pred else {}
    if args.guide_pred and pair.id not in predictions:
        raise DataError(args.guide_pred, 0, "id", f"no prediction for pair {pair.id!r}")
    slm = predictions.get(pair.id)
    # Looked up through the module at call time, so tests can put a fake embedder in its place.
    embedder = embed.SentenceEmbedder(args.embedder, batch_size=config.batch_size, threads=config.threads,
                                      cache_dir=config.cache_dir)
    retriever = Retriever(schema, embedder, train=args.train, shared=config.shared, cache_dir=config.cache_dir,
                          index=config.index)
    vectors = retriever.encode([pair])
    (candidates,) = retriever.candidates([pair], k=args.k, mass=args.mass, guides=[slm], vectors=vectors)
    (demos,) = retriever.demonstrations([pair], [candidates], k=args.demos, vectors=vectors)
    shots = [Shot(d.pair, predictions.get(d.pair.id)) for d in demos[:args.demos]]
    built = build_prompt(pair, template=args.template, schema=schema, candidates=candidates, demonstrations=shots,
                         slm=slm, budget=args.budget,
                         count_tokens=_tokenizer_counter(args.tokenizer, config) if args.tokenizer else None)
    if args.json:
        print(json.dumps(built.to_json(), ensure_ascii=False))
        return
    for message in built.prompt.messages:
        print(f"=== {message['role']} ===\n{message['content']}\n")
    print(built.summary())
