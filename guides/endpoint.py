"""A guide scored on a server: an OpenAI-compatible completions endpoint that echoes prompt log-probabilities
(vLLM serving the base model with the guide's LoRA adapter; README, "GPU serving"). Same label distributions as
`LabelScorer`, computed where the GPU is.

A batch of pairs is one request: each pair's chat-formatted prompt followed by each label's continuation, as
n_pairs x n_labels prompts, with `echo` and `logprobs`, so the server returns every prompt token with its
log-probability and character offset. A label's score is the sum over the tokens that start inside its
continuation, which is what `LabelScorer` sums locally, normalised over the labels as there. Servers want
max_tokens >= 1; the one generated token lies past the prompt and is not counted. A server whose tokens split a
continuation differently from the local tokenizer is refused: its sums would not be the guide's scores.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from collab.data import Pair

from .scoring import LabelScorer


class EndpointError(RuntimeError):
    """The endpoint cannot score labels the way the guide does (unreachable, no echo/logprobs, other tokens)."""


class EndpointScorer(LabelScorer):
    """LabelScorer whose label scores come from `base_url`'s completions endpoint, model `served_model`."""

    def __init__(self, base_url: str, served_model: str, tokenizer: Any, labels: Sequence[str], *,
                 template: str, api_key: str | None = None, timeout: float = 120.0, client: Any = None,
                 **kwargs: Any):
        super().__init__(None, tokenizer, labels, template=template, tree=False, reuse_prefix=False, **kwargs)
        if client is None:
            from openai import OpenAI

            client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=2)
        self.client, self.base_url, self.served_model = client, base_url, served_model
        self.continuation_texts = [tokenizer.decode(c) for c in self.continuations]

    def label_scores(self, pair: Pair) -> torch.Tensor:
        return self.label_scores_batch([pair])[0]

    def label_scores_batch(self, pairs: Sequence[Pair], prompts: Sequence[list[int]] | None = None) -> torch.Tensor:
        """`prompts` (token ids) go unused: the server takes the prompts' text and tokenizes it itself."""
        import openai

        prompt_texts = [self._chat_text(self.render(p).messages, generation_prompt=True) for p in pairs]
        texts = [prompt + cont for prompt in prompt_texts for cont in self.continuation_texts]
        try:
            reply = self.client.completions.create(model=self.served_model, prompt=texts, max_tokens=1,
                                                   temperature=0.0, echo=True, logprobs=1)
        except openai.APIConnectionError as e:
            raise EndpointError(f"guide endpoint {self.base_url} is unreachable: {e}") from e
        except openai.APIStatusError as e:
            raise EndpointError(f"guide endpoint {self.base_url} refused model {self.served_model!r} "
                                f"(HTTP {e.status_code}): {e.message}") from e
        choices = sorted(reply.choices, key=lambda c: c.index)
        if len(choices) != len(texts):
            raise EndpointError(f"guide endpoint {self.base_url} answered {len(choices)} of {len(texts)} prompts")
        n = len(self.labels)
        scores = torch.empty((len(pairs), n), dtype=torch.float64)
        for i, choice in enumerate(choices):
            row, label = divmod(i, n)
            scores[row, label] = self._continuation_logprob(choice, len(prompt_texts[row]), len(texts[i]), label)
        return torch.log_softmax(scores, dim=1)  # normalised over the labels, as LabelScorer's

    def _continuation_logprob(self, choice: Any, start: int, end: int, label: int) -> float:
        logprobs = getattr(choice, "logprobs", None)
        if logprobs is None or not getattr(logprobs, "text_offset", None):
            raise EndpointError(f"guide endpoint {self.base_url} returned no prompt log-probabilities: it must "
                                "support completions with echo and logprobs (vLLM does)")
        found = [lp for offset, lp in zip(logprobs.text_offset, logprobs.token_logprobs) if start <= offset < end]
        if len(found) != len(self.continuations[label]) or any(lp is None for lp in found):
            raise EndpointError(f"guide endpoint {self.base_url} splits label {self.labels[label]!r} into "
                                f"{len(found)} tokens, the guide's tokenizer into {len(self.continuations[label])}: "
                                "serve the guide's own base model")
        return float(sum(found))
