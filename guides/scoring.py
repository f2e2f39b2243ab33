"""Label distributions by scoring each label as the answer's continuation — no free generation.

For a pair, the prompt (a rendered template, through the tokenizer's chat template with the generation prompt)
runs through the model once. Each label's continuation is the label's tokens followed by the end-of-turn
token, so a label that is a prefix of another ("Cause" vs "Cause-Effect(e1,e2)") is not favoured. A label's
score is the sum of its continuation's token log-probabilities, normalised over the label set (log-softmax
across the labels: the log-probability of the label given that the answer is one of them); the distribution is
the softmax over the label scores (at the guide's temperature), so the answer is always one of the labels and
the probabilities sum to 1. Normalised, the first answer token needs no log-normaliser over the whole
vocabulary, which is the same for every label: the prompt pass computes the LM head only for the labels' first
tokens.

Cost per pair (SmolLM2-135M, 19 SemEval labels): the prompt's shared start (chat header, system prompt, label
list) is computed once per scorer and its KV cache reused; the pair-specific rest of the prompt runs once; then
all continuations are scored in ONE forward pass over that cache — as a token trie with a tree attention mask
(142 fed tokens instead of 19 × 13 padded ones), or, where a custom mask cannot be used, as a right-padded batch
over the prompt cache repeated once per label. `naive_label_scores` is the slow reference both must equal.
"""
from __future__ import annotations

import copy
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from collab.data import Pair, Prediction
from collab.excerpt import excerpt
from collab.prompts import RenderedPrompt, load_template

# Batches sorted by length together: 32 of 8 pairs left 2.7% of SemEval's computed tokens as padding where 8
# left 9.3% (and 8 sorted by characters 16.7%); the window only delays a stream's first answers.
WINDOW_BATCHES = 32
LABEL_CODES = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_END_OF_TURN_NAMES = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")


class LabelScorer:
    """Scores a fixed label set for entity pairs with a causal LM (any Hugging Face causal LM, PEFT-wrapped too).

    `label_batch` bounds how many label continuations share one forward pass (memory: label_batch × tokens ×
    vocabulary logits); the default covers every schema we ship in one pass.

    `tree`: the continuations of a label batch are merged into a token trie (shared label starts such as
    "Cause-Effect(" are fed once) and scored in one sequence whose 4D attention mask lets each node see the prompt
    and its own ancestors only. Used with SDPA/eager attention on models without sliding-window layers; otherwise
    (or with tree=False) the continuations are right-padded into a batch over a repeated prompt cache.

    `reuse_prefix`: the prompt tokens every pair shares (chat header, system prompt, label list) run through the
    model once per scorer and their KV cache is reused for every pair; only the pair-specific rest of the prompt
    runs per pair. The cache is rebuilt by itself when the device changes or an optimizer updates trainable
    parameters in place; call `reset_prefix_cache()` after any other change to the weights.

    `share_sentences`: pairs of one batch with the same text run their common prompt tokens once (see
    `label_scores_batch`); off, each pair has a row of its own (the same scores, for speed comparisons).

    `workers`: on a CPU (with the trie), batches are scored this many at once, each on a thread of its own that
    runs torch on one core; None: one per torch thread. Two threads splitting every small product meet at each
    of them, and a forward pass is hundreds of small products, so one core a batch does the same work sooner
    (same answers, `BENCHMARKS.md`). 1: one batch at a time on all of torch's threads.
    """

    def __init__(self, model: Any, tokenizer: Any, labels: Sequence[str], *, template: str = "slm/zero_shot.v1",
                 label_batch: int = 64, reuse_prefix: bool = True, tree: bool = True,
                 temperature: float = 1.0, never_final: str | None = None,
                 demonstrations: Callable[[Pair], Sequence[Pair]] | None = None, share_sentences: bool = True,
                 workers: int | None = None):
        labels = tuple(labels)
        if not labels:
            raise ValueError("LabelScorer needs at least one label")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate labels: {', '.join(duplicates)}")
        if any(not isinstance(label, str) or not label.strip() for label in labels):
            raise ValueError("labels must be non-empty strings")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        if never_final is not None and never_final not in labels:
            raise ValueError(f"never_final label {never_final!r} is not among the labels")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.model, self.tokenizer, self.labels, self.temperature = model, tokenizer, labels, temperature
        self.never_final = never_final
        self.template = load_template(template)
        if self.template.extra.get("shots") and demonstrations is None:
            raise ValueError(f"template {self.template.template} shows solved examples: give the scorer "
                             "`demonstrations` (collab.retrieval.demonstration_picker)")
        self.demonstrations = demonstrations
        self.label_batch = max(1, label_batch)
        self.share_sentences = share_sentences
        # model None: the scores come from elsewhere (guides.endpoint); prompts and labels are still built here
        self._keeps_logits = model is not None and (
            "logits_to_keep" in inspect.signature(_base_model(model).forward).parameters)
        self.continuations: list[list[int]] = self._label_continuations()
        self.groups = [range(i, min(i + self.label_batch, len(labels)))
                       for i in range(0, len(labels), self.label_batch)]
        self._attention = getattr(getattr(_base_model(model), "config", None), "_attn_implementation", None)
        self.tree = tree and model is not None and _supports_tree_mask(model)
        self._first_ids = sorted({c[0] for c in self.continuations})
        self._tries = ([_Trie([self.continuations[i] for i in group], self._first_ids) for group in self.groups]
                       if self.tree else [])
        self._label_head = _label_head(model, self._first_ids) if self.tree else None
        self._mlps_skip_padding = self.tree and _hook_mlps(model)
        self.shared_prefix: list[int] = self._shared_prefix() if reuse_prefix else []
        self._prefix_cache: Any = None
        self._prefix_stamp: Any = None
        self._prefix_lock = threading.Lock()  # workers share one prefix cache: the first to need it builds it
        self.workers = workers

    # ------------------------------------------------------------------------------------------ prompts
    def render(self, pair: Pair) -> RenderedPrompt:
        """The pair's prompt; with `demonstrations`, its solved examples come first as earlier turns. A
        template with `text_chars` shows long texts as an excerpt around the two mentions (collab.excerpt);
        `shot_chars`, where given, bounds the solved examples' texts instead."""
        limit = self.template.extra.get("text_chars")
        shot_limit = self.template.extra.get("shot_chars", limit)
        shots = [{"text": d.text, "head": d.head.text, "tail": d.tail.text, "head_type": d.head.type,
                  "tail_type": d.tail.type, "relation": d.relation, "answer": self._answer(d.relation)}
                 for d in (excerpt(d, shot_limit)
                           for d in (self.demonstrations(pair) if self.demonstrations else ()))]
        pair = excerpt(pair, limit)
        return self.template.render(
            text=pair.text, head=pair.head.text, tail=pair.tail.text, head_type=pair.head.type,
            tail_type=pair.tail.type, labels=list(self.labels), demonstrations=shots)

    def _chat_text(self, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def _encode(self, text: str) -> list[int]:
        # The chat template already writes any BOS it wants, as text.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, pair: Pair) -> list[int]:
        """Token ids of the chat-formatted prompt, ending with the assistant turn's opening."""
        return self._encode(self._chat_text(self.render(pair).messages, generation_prompt=True))

    def answers(self) -> list[str]:
        """What the model writes for each label: the label itself, or with a `label_codes` template its
        one-letter code (A, B, ... in label order)."""
        if not self.template.extra.get("label_codes"):
            return list(self.labels)
        if len(self.labels) > len(LABEL_CODES):
            raise ValueError(f"template {self.template.template} codes at most {len(LABEL_CODES)} labels, "
                             f"not {len(self.labels)}")
        return list(LABEL_CODES[:len(self.labels)])

    def _answer(self, relation: str) -> str:
        """What the model is shown answering for a solved example of `relation`. A label outside the scored
        set (a tail label in head-only training) is shown as the label that stands for the tail."""
        if relation not in self.labels:
            if self.never_final is None:
                raise ValueError(f"a solved example's label {relation!r} is not among the guide's labels")
            relation = self.never_final
        return self.answers()[self.labels.index(relation)]

    def _label_continuations(self) -> list[list[int]]:
        """Each label's tokens as the chat template writes them in an assistant turn, up to its end-of-turn token.

        Taken from the template itself (a probe conversation with and without the answer), so the tokens are the
        ones the model sees after the generation prompt. Falls back to label tokens + end-of-turn id when the
        template does not extend the generation prompt textually. Label codes are one token each and none is a
        prefix of another, so their continuation is that token alone: all labels score in the prompt's own pass.
        """
        probe = self.template.render(text="x", head="x", tail="x", head_type=None, tail_type=None,
                                     labels=list(self.labels)).messages
        prompt_text = self._chat_text(probe, generation_prompt=True)
        prompt = self._encode(prompt_text)
        end_of_turn = self._end_of_turn_id()
        specials = set(getattr(self.tokenizer, "all_special_ids", []) or []) | {end_of_turn}
        out = []
        for answer in self.answers():
            full_text = self._chat_text(probe + [{"role": "assistant", "content": answer}], generation_prompt=False)
            full = self._encode(full_text)
            rest = full[len(prompt):] if full_text.startswith(prompt_text) and full[:len(prompt)] == prompt else None
            cut = next((i for i, t in enumerate(rest or []) if t in specials), None)
            if rest is not None and cut is not None and cut > 0:
                out.append(rest[:cut + 1])
            else:
                out.append(self._encode(answer) + [end_of_turn])
        if self.template.extra.get("label_codes"):
            if any(len(c) != 2 for c in out) or len({c[0] for c in out}) != len(out):
                raise ValueError(f"template {self.template.template}: this tokenizer does not write each label "
                                 "code as one token of its own")
            out = [c[:1] for c in out]
        return out

    def _shared_prefix(self) -> list[int]:
        """Prompt tokens that do not depend on the pair: the common start of two probes with unlike values.

        The last two common tokens are dropped, so a token merging across the boundary cannot leak in; every pair's
        prompt is still checked against the prefix before its cache is used.
        """
        def probe(word: str) -> list[int]:
            return self._encode(self._chat_text(self.template.render(
                text=f"{word} and {word}", head=word, tail=word, head_type=None, tail_type=None,
                labels=list(self.labels)).messages, generation_prompt=True))

        first, second = probe("alpha"), probe("Zyx")
        common = 0
        for a, b in zip(first, second):
            if a != b:
                break
            common += 1
        common -= 2
        return first[:common] if common >= 8 else []

    def reset_prefix_cache(self) -> None:
        """Forget the shared prefix's KV cache (after changing the weights other than by an in-place update)."""
        self._prefix_cache = None

    def _end_of_turn_id(self) -> int:
        vocab = self.tokenizer.get_vocab()
        for name in _END_OF_TURN_NAMES:
            if name in vocab:
                return vocab[name]
        if self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no end-of-turn or EOS token to end label continuations")
        return self.tokenizer.eos_token_id

    # ------------------------------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def label_scores(self, pair: Pair) -> torch.Tensor:
        """Sum of token log-probs of each label's continuation, normalised over the labels (shape [n_labels], CPU;
        float32, or float64 for a float64 model).

        With a label trie this is `label_scores_batch` for one pair. Otherwise: one forward pass over the prompt
        (only its pair-specific part when the shared prefix's cache applies), then one batched pass per
        `label_batch` labels over the continuations, reusing the prompt's KV cache.
        """
        if self.tree:
            return self.label_scores_batch([pair])[0]
        device = _device(self.model)
        ids = self.prompt_ids(pair)
        self._check_length([pair], [ids])
        with _eval_mode(self.model):
            out = self._run_prompt(ids, device)
            first = torch.log_softmax(_wide(out.logits[0, -1]), dim=-1)  # predicts each continuation's 1st token
            cache = out.past_key_values
            scores = []
            for group in self.groups:
                group_cache = cache if len(self.groups) == 1 else copy.deepcopy(cache)
                conts = [self.continuations[i] for i in group]
                scores.append(self._score_chunk(conts, first, group_cache, len(ids), device))
        return torch.log_softmax(torch.cat(scores), dim=0).cpu()

    def _prefix_kv(self, device: torch.device) -> Any:
        """A fresh copy of the shared prefix's KV cache, (re)built when the device or the weights changed."""
        stamp = (device, _weights_version(self.model))
        with self._prefix_lock:
            if self._prefix_cache is None or self._prefix_stamp != stamp:
                prefix = torch.tensor([self.shared_prefix], dtype=torch.long, device=device)
                if self._label_head:  # no logits wanted
                    self._prefix_cache = self._label_head[0](input_ids=prefix, use_cache=True).past_key_values
                else:
                    kwargs = {"logits_to_keep": 1} if self._keeps_logits else {}
                    self._prefix_cache = self.model(input_ids=prefix, use_cache=True, **kwargs).past_key_values
                self._prefix_stamp = stamp
            return copy.deepcopy(self._prefix_cache)

    def _run_prompt(self, ids: list[int], device: torch.device) -> Any:
        """The prompt's forward pass (last position's logits only), starting from the shared prefix's cache."""
        kwargs = {"logits_to_keep": 1} if self._keeps_logits else {}
        k = len(self.shared_prefix)
        if k and len(ids) > k and ids[:k] == self.shared_prefix:
            rest = torch.tensor([ids[k:]], dtype=torch.long, device=device)
            return self.model(input_ids=rest, past_key_values=self._prefix_kv(device), use_cache=True, **kwargs)
        return self.model(input_ids=torch.tensor([ids], dtype=torch.long, device=device), use_cache=True, **kwargs)

    def _score_chunk(self, conts: list[list[int]], first: torch.Tensor, cache: Any, n_prompt: int,
                     device: torch.device) -> torch.Tensor:
        n, width = len(conts), max(len(c) for c in conts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((n, width), pad, dtype=torch.long, device=device)
        mask = torch.zeros((n, width), dtype=torch.long, device=device)
        for i, cont in enumerate(conts):
            ids[i, :len(cont)] = torch.tensor(cont, dtype=torch.long)
            mask[i, :len(cont)] = 1
        scores = first[ids[:, 0]]  # log p(first continuation token | prompt)
        if width > 1:
            cache.batch_repeat_interleave(n)
            inputs = ids[:, :-1]  # the last token of each continuation is only predicted, never fed
            attention = torch.cat([torch.ones((n, n_prompt), dtype=torch.long, device=device), mask[:, :-1]], dim=1)
            positions = torch.arange(n_prompt, n_prompt + width - 1, device=device).unsqueeze(0).expand(n, -1)
            out = self.model(input_ids=inputs, attention_mask=attention, position_ids=positions,
                             past_key_values=cache, use_cache=True)
            logits = _wide(out.logits)  # [n, width-1, vocab]; gather − logsumexp keeps one vocab-sized copy
            targets = ids[:, 1:]
            token_logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
            token_logp = token_logp * mask[:, 1:]
            scores = scores + token_logp.sum(dim=1)
        return scores

    @torch.inference_mode()
    def label_scores_batch(self, pairs: Sequence[Pair], prompts: Sequence[list[int]] | None = None) -> torch.Tensor:
        """`label_scores` for several pairs at once (shape [n_pairs, n_labels]): one forward pass over all the
        prompts, one over all the label tries. Bigger matrix products are what a CPU does fast.

        Pairs with the same text (a book sentence naming three characters gives three pairs) share one row:
        [shared prefix][left padding][the prompt tokens they have in common][each pair's own rest]..., so the
        sentence runs once. A 4D mask hides the padding and lets each pair's rest see the common part and
        itself only; position ids restart after the common part for each rest, and each trie node sees its
        pair's prompt and its ancestors; so every pair sees exactly what the one-pair path sees. Models
        where a custom mask cannot be used go one pair at a time.

        `prompts`: the pairs' `prompt_ids`, when the caller has them already.
        """
        if not self.tree:
            return torch.stack([self.label_scores(p) for p in pairs])
        device = _device(self.model)
        prompts = [self.prompt_ids(p) for p in pairs] if prompts is None else list(prompts)
        self._check_length(pairs, prompts)
        k = len(self.shared_prefix)
        if not (k and all(len(ids) > k and ids[:k] == self.shared_prefix for ids in prompts)):
            k = 0
        rows = _Rows([ids[k:] for ids in prompts], [p.text if self.share_sentences else i
                                                    for i, p in enumerate(pairs)], k)
        with _eval_mode(self.model):
            cache = None
            if k:
                cache = self._prefix_kv(device)
                cache.batch_repeat_interleave(rows.n)
            inputs = {"input_ids": rows.ids.to(device), "position_ids": rows.positions.to(device),
                      "attention_mask": self._mask(rows.visible()).to(device), "past_key_values": cache,
                      "use_cache": True}
            with _mlps_on_real_tokens(rows.real.to(device), self._mlps_skip_padding):
                if self._label_head:
                    body, head = self._label_head
                    out = body(**inputs)
                    at_ends = out.last_hidden_state[rows.row_of, rows.end_index]
                    # [n_pairs, first tokens]: logits, not log-probabilities; the scores are normalised below
                    first = _wide(_head_rows(head, self._first_ids, at_ends))
                else:
                    kwargs = {"logits_to_keep": rows.keep} if self._keeps_logits else {}
                    out = self.model(**inputs, **kwargs)
                    at_ends = out.logits[rows.row_of, rows.end_column if self._keeps_logits else rows.end_index]
                    first = torch.log_softmax(_wide(at_ends), dim=-1)[:, self._first_ids]  # in input order
            cache = out.past_key_values
            scores = []
            for trie in self._tries:
                group_cache = cache if len(self._tries) == 1 else copy.deepcopy(cache)
                scores.append(self._score_tree_batch(trie, first, group_cache, rows, device))
        return torch.log_softmax(torch.cat(scores, dim=1), dim=1).cpu()

    def _check_length(self, pairs: Sequence[Pair], prompts: list[list[int]]) -> None:
        limit = getattr(getattr(_base_model(self.model), "config", None), "max_position_embeddings", None)
        longest = max(len(c) for c in self.continuations)
        for pair, ids in zip(pairs, prompts):
            if limit and len(ids) + longest > limit:
                raise ValueError(f"pair {pair.id}: its prompt is {len(ids)} tokens and the model reads at most "
                                 f"{limit}; shorten the pair's text to the sentences around its two mentions")

    def _mask(self, visible: torch.Tensor) -> torch.Tensor:
        """[n, q, kv] visibility as the attention implementation wants it, with the head axis added."""
        if self._attention == "sdpa":  # boolean: True = may attend
            return visible[:, None]
        dtype = _logits_dtype(self.model)  # eager attention adds the mask to the scores
        return torch.zeros(visible.shape, dtype=dtype).masked_fill_(~visible, torch.finfo(dtype).min)[:, None]

    def _score_tree_batch(self, trie: _Trie, first: torch.Tensor, cache: Any, rows: "_Rows",
                          device: torch.device) -> torch.Tensor:
        scores = first[:, trie.first_columns.to(device)]  # [n_pairs, labels]
        if trie.n_nodes == 0:
            return scores
        visible, positions = rows.trie_view(trie)
        out = self.model(input_ids=trie.tokens.repeat(rows.blocks)[None].expand(rows.n, -1).to(device),
                         position_ids=positions.to(device), attention_mask=self._mask(visible).to(device),
                         past_key_values=cache, use_cache=True)
        logits = _wide(out.logits)  # [rows, blocks * nodes, vocab]
        row = rows.row_of.to(device)[:, None]
        nodes = trie.score_node.to(device)[None] + (rows.block_of.to(device) * trie.n_nodes)[:, None]
        token_logp = (logits[row, nodes, trie.score_target.to(device)[None]]
                      - torch.logsumexp(logits, dim=-1)[row, nodes])  # [n_pairs, scored]
        return scores.index_add(1, trie.score_label.to(device), token_logp)

    @torch.inference_mode()
    def naive_label_scores(self, pair: Pair) -> torch.Tensor:
        """The same scores the slow way (the whole prompt + continuation once per label); for tests and checks."""
        device = _device(self.model)
        prompt = self.prompt_ids(pair)
        scores = []
        with _eval_mode(self.model):
            for cont in self.continuations:
                ids = torch.tensor([prompt + cont], dtype=torch.long, device=device)
                logp = torch.log_softmax(_wide(self.model(input_ids=ids).logits[0]), dim=-1)
                positions = torch.arange(len(prompt) - 1, len(prompt) + len(cont) - 1, device=device)
                scores.append(logp[positions, torch.tensor(cont, device=device)].sum())
        return torch.log_softmax(torch.stack(scores), dim=0).cpu()

    def probabilities(self, pair: Pair) -> torch.Tensor:
        return torch.softmax(self.label_scores(pair).double() / self.temperature, dim=0)

    def distribution(self, pair: Pair) -> dict[str, float]:
        """Every label → probability (they sum to 1), in label order."""
        return dict(zip(self.labels, self.probabilities(pair).tolist()))

    # ------------------------------------------------------------------------------------------ predictions
    def _prediction(self, pair: Pair, probs: torch.Tensor) -> Prediction:
        """The top label with its probability and margin, and every label's probability, most probable first
        (candidate retrieval cuts the guide's ranking adaptively, so it needs more than a fixed top few). A
        `never_final` label (a head-only guide's `long_tail`: "something rarer than what I was trained on") on
        top is flagged, for escalation, and the answer is the most probable real label."""
        order = torch.argsort(probs, descending=True, stable=True).tolist()
        every = {self.labels[i]: float(probs[i]) for i in order}
        flags = []
        if self.never_final is not None and self.labels[order[0]] == self.never_final:
            flags.append(self.never_final)
        real = [i for i in order if self.labels[i] != self.never_final]
        best = real[0]
        confidence = float(probs[best])
        margin = confidence - float(probs[real[1]]) if len(real) > 1 else confidence
        relation = self.labels[best]
        return Prediction(id=pair.id, relation=relation, confidence=confidence, margin=margin, distribution=every,
                          route="slm", slm={"relation": relation, "confidence": confidence}, flags=flags)

    def predict_one(self, pair: Pair) -> Prediction:
        return self._prediction(pair, self.probabilities(pair))

    def predict(self, pairs: Iterable[Pair], batch_size: int = 8) -> list[Prediction]:
        return list(self.iter_predict(pairs, batch_size))

    def iter_predict(self, pairs: Iterable[Pair], batch_size: int = 8) -> Iterator[Prediction]:
        """Predictions in input order, batched as `iter_label_scores` batches."""
        for window, scores in self._scored_windows(pairs, batch_size):
            probs = torch.softmax(scores / self.temperature, dim=1)
            for pair, probs_of_pair in zip(window, probs):
                yield self._prediction(pair, probs_of_pair)

    def iter_label_scores(self, pairs: Iterable[Pair], batch_size: int = 8) -> Iterator[torch.Tensor]:
        """Raw label scores (before the temperature; float64) in input order, for calibration. Pairs go through
        the model about `batch_size` at a time (`_batches`), grouped by prompt length in tokens inside windows
        of WINDOW_BATCHES batches so little padding is computed (give the pairs of one sentence together, and
        they share a row)."""
        for _, scores in self._scored_windows(pairs, batch_size):
            yield from scores

    def _scored_windows(self, pairs: Iterable[Pair], batch_size: int) -> Iterator[tuple[list[Pair], torch.Tensor]]:
        """Each window of pairs with its raw label scores. With workers, the next window's batches are queued
        before a window's scores are handed out, so no worker waits while the last batches of a window finish
        or while the next one is tokenised (the workers were idle 5.4% of a run where each window waited for the
        last, 1.1% now)."""
        pool = self._workers_pool()
        submit = pool.submit if pool else run_now
        queued: list[tuple[list[Pair], list[tuple[list[int], Future]]]] = []
        with _eval_mode(self.model):  # here, not in each worker: one worker must not put training mode back mid-pass
            try:
                for window in _windows(pairs, batch_size * WINDOW_BATCHES):
                    queued.append((window, self._window_jobs(window, batch_size, submit)))
                    if len(queued) > (1 if pool else 0):
                        yield self._gathered(queued)
                while queued:
                    yield self._gathered(queued)
            finally:  # a caller that stops early: nothing may still run once eval mode is undone
                jobs = [job for _, window_jobs in queued for _, job in window_jobs]
                for job in jobs:
                    job.cancel()
                wait(jobs)

    def _gathered(self, queued: list) -> tuple[list[Pair], torch.Tensor]:
        """The first queued window's pairs and scores (float64, in the window's order), once its batches are
        done; it leaves the queue only then, so a batch that failed leaves the rest to be waited for."""
        pairs, jobs = queued[0]
        scores = torch.empty((len(pairs), len(self.labels)), dtype=torch.float64)
        for batch, job in jobs:
            scores[batch] = job.result().double()
        del queued[0]
        return pairs, scores

    def _window_jobs(self, pairs: list[Pair], batch_size: int,
                     submit: Callable[..., Future]) -> list[tuple[list[int], Future]]:
        """The window's batches, each with the job that scores it."""
        # by the tokens of the batch row each pair lands in (characters were a poor proxy: the entity names are
        # in the prompt too), and pairs of one text next to each other, so they can share a row
        rows = [pair.text if self.share_sentences else i for i, pair in enumerate(pairs)]  # as label_scores_batch
        ids = [self.prompt_ids(pair) for pair in pairs]  # once: a k-shot prompt retrieves its examples
        prompts: dict[Any, list[list[int]]] = {}
        for row, prompt in zip(rows, ids):
            prompts.setdefault(row, []).append(prompt)
        length = {row: _row_length(prompts_of_row) for row, prompts_of_row in prompts.items()}
        order = sorted(range(len(pairs)), key=lambda i: (length[rows[i]], pairs[i].text))
        # longest first: the window's last batches are then its shortest, so the worker that finishes first waits
        # less for the other at the end of a run (on 200 SemEval pairs the workers were busy 92% of the wall time
        # with the longest batch last, 97% this way)
        batches = list(_batches(order, rows, batch_size))[::-1]
        return [(batch, submit(self.label_scores_batch, [pairs[i] for i in batch], [ids[i] for i in batch]))
                for batch in batches]

    def _workers_pool(self) -> OneTorchThreadPool | None:
        """The threads that score batches side by side (see `workers`), each running torch on one thread; None
        where batches go one at a time."""
        # without the trie a batch renders and tokenizes its prompts itself, and neither may run on two threads
        if self.model is None or not self.tree:
            return None
        return cpu_workers(self.model, self.workers)


_POOLS: dict[tuple[int, int], "OneTorchThreadPool"] = {}
_POOLS_LOCK = threading.Lock()


def cpu_workers(model: Any, size: int | None = None) -> "OneTorchThreadPool | None":
    """This process's pool of `size` one-torch-thread workers (None: one per torch thread) for running a CPU
    model's batches side by side; None where batches should go one at a time (one worker, or not on a CPU).
    Started on first use and kept, one per size, for every guide of the process."""
    n = size or torch.get_num_threads()
    if n == 1 or _device(model).type != "cpu":
        return None
    key = (n, os.getpid())  # a forked child has the parent's pool object but not its threads
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = OneTorchThreadPool(n, f"torch-workers-{n}")
        return _POOLS[key]


class OneTorchThreadPool(ThreadPoolExecutor):
    """`size` threads that each run torch on one thread, for work done side by side: on small products two
    threads splitting each one meet at every product, where one product per thread does not (BENCHMARKS.md)."""

    def __init__(self, size: int, name: str):
        super().__init__(size, thread_name_prefix=name)
        self.size = size
        threads = torch.get_num_threads()
        ready = threading.Barrier(size)  # each of the threads takes exactly one of the set-ups

        def one_torch_thread() -> None:
            # torch's thread count is per thread, but a thread takes the last count set anywhere when it first
            # asks for it: ask now, before this thread's count is put back below
            torch.set_num_threads(1)
            torch.get_num_threads()
            ready.wait()

        for future in [self.submit(one_torch_thread) for _ in range(size)]:
            future.result()
        torch.set_num_threads(threads)


def run_now(fn: Callable, *args: Any) -> Future:
    """`fn(*args)` run here and now, as a finished future: the jobs of a guide with no workers."""
    job: Future = Future()
    job.set_result(fn(*args))
    return job


def _windows(pairs: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
    window: list[Pair] = []
    for pair in pairs:
        window.append(pair)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


class _Rows:
    """The batch layout of `label_scores_batch`: one row per distinct pair text, left-padded to one width.

    A row holds the prompt tokens its pairs have in common, then each pair's rest (segments 1, 2, ...; the
    common part is segment 0, padding -1). Every pair keeps at least its last token in its rest, since that
    is where its answer's first token is predicted.
    """

    def __init__(self, rests: list[list[int]], texts: Sequence[Any], k: int):
        groups: dict[Any, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(text, []).append(i)
        layouts = []
        for members in groups.values():
            common = _common_length([rests[i] for i in members])
            layouts.append((members, common))
        self.n = len(layouts)
        self.blocks = max(len(members) for members, _ in layouts)  # pair slots per row, for the trie pass
        width = max(common + sum(len(rests[i]) - common for i in members) for members, common in layouts)
        self.k, self.width = k, width
        self.ids = torch.zeros((self.n, width), dtype=torch.long)  # padding's id is never seen: it is masked
        self.segments = torch.full((self.n, width), -1, dtype=torch.long)
        self.positions = torch.zeros((self.n, width), dtype=torch.long)
        n_pairs = len(rests)
        self.row_of = torch.zeros(n_pairs, dtype=torch.long)
        self.block_of = torch.zeros(n_pairs, dtype=torch.long)
        self.end_index = torch.zeros(n_pairs, dtype=torch.long)      # column of each pair's last prompt token
        self.prompt_length = torch.zeros(n_pairs, dtype=torch.long)  # tokens after the shared prefix
        for row, (members, common) in enumerate(layouts):
            tokens = rests[members[0]][:common]
            segments = [0] * common
            positions = list(range(k, k + common))
            for block, i in enumerate(members):
                own = rests[i][common:]
                tokens += own
                segments += [block + 1] * len(own)
                positions += range(k + common, k + len(rests[i]))
                self.row_of[i], self.block_of[i] = row, block
                self.prompt_length[i] = len(rests[i])
            at = width - len(tokens)
            self.ids[row, at:] = torch.tensor(tokens)
            self.segments[row, at:] = torch.tensor(segments)
            self.positions[row, at:] = torch.tensor(positions)
            ends, length = [], 0
            for i in members:
                length += len(rests[i]) - common
                ends.append(at + common + length - 1)
            self.end_index[members] = torch.tensor(ends)
        # With logits_to_keep, the model returns only the columns where some pair's prompt ends.
        self.keep = torch.unique(self.end_index)
        self.end_column = torch.searchsorted(self.keep, self.end_index)

    @property
    def real(self) -> torch.Tensor:
        return self.segments >= 0

    def visible(self) -> torch.Tensor:
        """[rows, width, k + width]: who each token may attend to in the prompt pass."""
        seg, real = self.segments, self.real
        causal = torch.ones((self.width, self.width), dtype=torch.bool).tril()
        same = (seg[:, :, None] == seg[:, None, :]) | (seg[:, None, :] == 0)
        own = causal[None] & real[:, None, :] & same
        # A padding query sees the prefix (or itself), so no softmax row is empty; its output is never used.
        own |= torch.eye(self.width, dtype=torch.bool)[None] & ~real[:, :, None]
        return torch.cat([torch.ones((self.n, self.width, self.k), dtype=torch.bool), own], dim=2)

    def trie_view(self, trie: "_Trie") -> tuple[torch.Tensor, torch.Tensor]:
        """The trie pass's mask [rows, blocks * nodes, k + width + blocks * nodes] and position ids: block b of
        a row holds the trie for the row's pair b, seeing that pair's prompt and its own ancestors; a block
        with no pair (a row with fewer pairs) sees the whole row and is never read."""
        nodes, blocks = trie.n_nodes, self.blocks
        seg, real = self.segments, self.real
        prompt = real[:, None, :].repeat(1, blocks, 1)                  # [rows, blocks, width]
        used = torch.zeros((self.n, blocks), dtype=torch.bool)
        used[self.row_of, self.block_of] = True
        block_ids = torch.arange(blocks)[None, :, None] + 1
        mine = (seg[:, None, :] == 0) | (seg[:, None, :] == block_ids)
        prompt = torch.where(used[:, :, None], prompt & mine, prompt)
        prompt = prompt.repeat_interleave(nodes, dim=1)                 # [rows, blocks * nodes, width]
        tree = torch.block_diag(*[trie.ancestors] * blocks)[None].expand(self.n, -1, -1)
        visible = torch.cat([torch.ones((self.n, blocks * nodes, self.k), dtype=torch.bool), prompt, tree], dim=2)
        start = torch.full((self.n, blocks), self.k, dtype=torch.long)
        start[self.row_of, self.block_of] = self.k + self.prompt_length
        positions = (start[:, :, None] + trie.depths[None, None]).reshape(self.n, blocks * nodes)
        return visible, positions


def _batches(order: list[int], rows: list[Any], batch_size: int) -> Iterator[list[int]]:
    """Runs of `order` (pair indices sorted by the length of the row they share) as batches of up to `batch_size`
    pairs, more only when one row holds more. A row's pairs stay in one batch: split, its common part runs
    twice and pads the other batch. On 200 of a novel's pairs, 8 pairs cut anywhere computed 13.3% padding and
    whole rows 4.4%; a cap on the batch's tokens as well (so long rows go fewer to a batch) timed no faster."""
    batch: list[int] = []
    for i in order:
        if batch and len(batch) >= batch_size and rows[i] != rows[batch[-1]]:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _common_length(rests: list[list[int]]) -> int:
    """Tokens every rest starts with, leaving each at least its last token."""
    common = min(len(r) for r in rests) - 1
    for i in range(common):
        if any(r[i] != rests[0][i] for r in rests[1:]):
            return i
    return max(common, 0)


def _row_length(prompts: list[list[int]]) -> int:
    """Tokens of the batch row that prompts of one text share: their common part once, then each one's rest."""
    common = _common_length(prompts)
    return common + sum(len(p) - common for p in prompts)


class _Trie:
    """The continuations of one label batch as a token trie, flattened for one tree-masked forward pass.

    Nodes are the distinct proper prefixes of the continuations (a continuation's last token is only predicted,
    never fed); node i feeds its prefix's last token at position prompt + depth, and sees its ancestors only.
    Each (node, target, label) triple says: label's next token `target` is predicted at `node`.
    """

    def __init__(self, continuations: list[list[int]], first_ids: list[int]):
        """`first_ids`: the columns of the prompt pass's first-token scores, by token id."""
        index: dict[tuple[int, ...], int] = {}
        tokens, depths, parents = [], [], []
        score_node, score_target, score_label = [], [], []
        for label, cont in enumerate(continuations):
            for k in range(1, len(cont)):
                prefix = tuple(cont[:k])
                if prefix not in index:
                    index[prefix] = len(tokens)
                    tokens.append(cont[k - 1])
                    depths.append(k - 1)
                    parents.append(index[prefix[:-1]] if k > 1 else -1)
                score_node.append(index[prefix])
                score_target.append(cont[k])
                score_label.append(label)
        n = len(tokens)
        ancestors = torch.zeros((n, n), dtype=torch.bool)
        for i in range(n):
            j = i
            while j >= 0:
                ancestors[i, j] = True
                j = parents[j]
        self.n_nodes = n
        self.tokens = torch.tensor(tokens, dtype=torch.long)
        self.depths = torch.tensor(depths, dtype=torch.long)
        self.ancestors = ancestors
        self.first_columns = torch.tensor([first_ids.index(cont[0]) for cont in continuations], dtype=torch.long)
        self.score_node = torch.tensor(score_node, dtype=torch.long)
        self.score_target = torch.tensor(score_target, dtype=torch.long)
        self.score_label = torch.tensor(score_label, dtype=torch.long)


def _supports_tree_mask(model: Any) -> bool:
    """Custom 4D masks work with SDPA and eager attention; sliding-window layers keep too short a cache for them."""
    config = getattr(_base_model(model), "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if getattr(config, "sliding_window", None):
        layer_types = getattr(config, "layer_types", None)
        if layer_types is None:
            return getattr(config, "use_sliding_window", True) is False
        return not any("sliding" in str(t) for t in layer_types)
    return True


def _label_head(model: Any, first_ids: list[int]) -> tuple[Any, torch.nn.Linear] | None:
    """The model's decoder body and its LM head, when the head is a plain linear layer (not an adapter's, say) whose
    rows for `first_ids`, applied to the body's hidden states, give the model's own logits for those tokens on a
    probe (a model that scales or caps its logits fails it); else None, and the prompt pass runs the whole head.
    On SemEval's 19 label codes the whole head was 2% of the scoring time, at a fifth of the products' speed."""
    base = _base_model(model)
    get_decoder, get_head = getattr(base, "get_decoder", None), getattr(base, "get_output_embeddings", None)
    if not callable(get_decoder) or not callable(get_head):
        return None
    body, head = get_decoder(), get_head()
    if body is None or type(head) is not torch.nn.Linear:
        return None
    probe = torch.arange(1, 9, device=_device(model))[None]
    with torch.inference_mode(), _eval_mode(model):
        whole = model(input_ids=probe).logits[0][:, first_ids]
        rows = _head_rows(head, first_ids, body(input_ids=probe).last_hidden_state[0])
    return (body, head) if torch.allclose(rows, whole, rtol=1e-4, atol=1e-4) else None


# The prompt pass's real (not padding) token positions on this thread, while `_mlps_on_real_tokens` holds them.
_real_tokens = threading.local()
_hooked_mlps: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def _hook_mlps(model: Any) -> bool:
    """Hooks each decoder layer's MLP so that within `_mlps_on_real_tokens` it runs on the real tokens alone.
    An MLP works token by token, so the real tokens' outputs do not depend on the padding rows (on this CPU the
    probabilities come out bit-identical), and the padding, whose outputs nothing reads, is not computed: 2.7% of
    the prompt pass's tokens on SemEval test and 3.9% on a novel's pairs, through the three quarters of a layer's
    weights the MLP holds. Outside, the hooks pass everything through. False where the body has no layers with
    an MLP module."""
    body = getattr(_base_model(model), "get_decoder", lambda: None)()
    mlps = [getattr(layer, "mlp", None) for layer in getattr(body, "layers", None) or ()]
    if not mlps or not all(isinstance(mlp, torch.nn.Module) for mlp in mlps):
        return False
    for mlp in mlps:
        if mlp not in _hooked_mlps:
            mlp.register_forward_pre_hook(_pack_real_tokens)
            mlp.register_forward_hook(_unpack_real_tokens)
            _hooked_mlps.add(mlp)
    return True


@contextmanager
def _mlps_on_real_tokens(real: torch.Tensor, enabled: bool = True) -> Iterator[None]:
    """Within, a hooked MLP fed this thread's batch ([rows, width, hidden], `real` [rows, width]) runs on the
    real tokens only; the padding positions' outputs are zeros."""
    if not enabled or bool(real.all()):
        yield
        return
    _real_tokens.shape, _real_tokens.index = tuple(real.shape), real.reshape(-1).nonzero().squeeze(1)
    try:
        yield
    finally:
        _real_tokens.index = _real_tokens.padded_shape = None


def _pack_real_tokens(module: torch.nn.Module, args: tuple) -> tuple | None:
    index = getattr(_real_tokens, "index", None)
    if index is None or len(args) != 1 or tuple(args[0].shape[:2]) != _real_tokens.shape:
        return None
    hidden = args[0]
    _real_tokens.padded_shape = hidden.shape  # set while this MLP call runs packed: its output is unpacked to it
    return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)[None],)


def _unpack_real_tokens(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    shape = getattr(_real_tokens, "padded_shape", None)
    if shape is None:
        return None
    _real_tokens.padded_shape = None
    full = output.new_zeros(shape[0] * shape[1], output.shape[-1])
    return full.index_copy_(0, _real_tokens.index, output[0]).view(shape[0], shape[1], -1)


def _head_rows(head: torch.nn.Linear, ids: list[int], hidden: torch.Tensor) -> torch.Tensor:
    """The LM head's logits for the tokens `ids` only."""
    return torch.nn.functional.linear(hidden, head.weight[ids], None if head.bias is None else head.bias[ids])


def _weights_version(model: Any) -> int:
    """Sum of the trainable parameters' in-place update counters: changes whenever an optimizer steps."""
    return sum(getattr(p, "_version", 0) for p in model.parameters() if p.requires_grad)


def _logits_dtype(model: Any) -> torch.dtype:
    dtype = getattr(model, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (bf16/fp16 upcast; a float64 model stays float64)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _base_model(model: Any) -> Any:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode (no dropout) while scoring; a model that was training goes back to training afterwards. No model
    (the scores come from an endpoint): nothing to switch."""
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()
