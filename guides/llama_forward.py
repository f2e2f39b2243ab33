"""A Llama decoder body's forward pass without transformers' per-call machinery and with fewer operations between
its matrix products, for the guide's scoring passes.

On SmolLM2-135M the products are 85% of a scoring worker's time and run at the CPU's matmul speed. The scorer runs
batches on worker threads of one process, and transformers' `LlamaModel` wraps every model, layer and attention
call in Python (keyword deprecation, config defaults, output capture, checkpointing wrappers, `**kwargs` passed
down 30 layers): on one thread that costs nothing measurable, but two workers' Python takes turns, and the same
arithmetic called directly scored 7.7% more pairs a second (`BENCHMARKS.md`). For the same reason the modules'
own `forward` is called, not `nn.Module.__call__` and its hook machinery: 3-7% more, to the bit the same
(so `llama_forward` refuses a body whose modules carry hooks, which would not run). Adapters inside the
projections still apply: they are modules with a `forward` too. Three operations are also cheaper, 2% more:
- rotary embeddings as `x * cos + roll(x) * signed sin` (one fused multiply-add) instead of slicing, negating and
  concatenating each query and key for `rotate_half`;
- grouped-query attention in one SDPA call (`enable_gqa`), not with keys and values first copied once per query
  head;
- SiLU(gate) * up in place, without two more activation-sized tensors.
Results differ from transformers' only by float rounding; the scorer checks that on a probe before using it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama import modeling_llama as llama


class LlamaForward:
    """Callable like the body it wraps, for inference: `input_ids`, an optional 4D mask (boolean, True = may
    attend), position ids and a cache, which is updated in place as transformers updates it (and always filled:
    `use_cache` is taken only to be called as the body is)."""

    def __init__(self, body: llama.LlamaModel):
        self.body = body

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None, past_key_values: Any = None,
                 use_cache: bool = True) -> BaseModelOutputWithPast:
        body, config = self.body, self.body.config
        hidden = body.embed_tokens.forward(input_ids)
        cache = past_key_values if past_key_values is not None else DynamicCache(config=config)
        n, past = input_ids.shape[1], cache.get_seq_length()
        if position_ids is None:
            position_ids = (torch.arange(n, device=hidden.device) + past)[None]
        if attention_mask is None:  # causal, over the cache and the new tokens
            attention_mask = torch.ones((n, past + n), dtype=torch.bool, device=hidden.device).tril(past)[None, None]
        elif attention_mask.dim() != 4:
            raise ValueError(f"LlamaForward takes a 4D attention mask, not {attention_mask.dim()}D")
        cos, sin = body.rotary_emb.forward(hidden, position_ids=position_ids)
        half = cos.shape[-1] // 2
        # rotate_half(x) * sin == roll(x, half) * sin with its first half negated (the two halves of sin are equal)
        cos, sin = cos[:, None], torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)[:, None]
        for layer in body.layers[:config.num_hidden_layers]:
            attn, mlp = layer.self_attn, layer.mlp
            x = layer.input_layernorm.forward(hidden)
            shape = (*x.shape[:-1], -1, attn.head_dim)
            query = attn.q_proj.forward(x).view(shape).transpose(1, 2)
            key = attn.k_proj.forward(x).view(shape).transpose(1, 2)
            value = attn.v_proj.forward(x).view(shape).transpose(1, 2)
            query = torch.addcmul(query * cos, query.roll(half, -1), sin)
            key = torch.addcmul(key * cos, key.roll(half, -1), sin)
            key, value = cache.update(key, value, attn.layer_idx)
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=attn.scaling,
                                                 enable_gqa=True)
            hidden += attn.o_proj.forward(out.transpose(1, 2).reshape(*x.shape[:-1], -1))  # in place: hidden is a fresh tensor
            x = layer.post_attention_layernorm.forward(hidden)
            gate = F.silu(mlp.gate_proj.forward(x), inplace=True)
            hidden += mlp.down_proj.forward(gate.mul_(mlp.up_proj.forward(x)))
        return BaseModelOutputWithPast(last_hidden_state=body.norm.forward(hidden), cache=cache)


def llama_forward(body: Any) -> LlamaForward | None:
    """A `LlamaForward` for `body` when it is transformers' own Llama decoder on the CPU with SDPA attention, built of
    its own layer classes with SiLU MLPs and no forward hooks; else None. Other architectures keep their own forward, and so do eager
    attention (its softmax is float32 whatever the model's dtype) and GPUs: there no worker threads share an
    interpreter, and SDPA given both a mask and grouped heads falls back to its math kernel (transformers avoids
    that combination on CUDA for this reason)."""
    if type(body) is not llama.LlamaModel or getattr(body.config, "hidden_act", None) != "silu":
        return None
    if body.config._attn_implementation != "sdpa" or body.device.type != "cpu":
        return None
    if any(module._forward_hooks or module._forward_pre_hooks for module in body.modules()):
        return None
    for layer in body.layers:
        parts = (layer, layer.self_attn, layer.mlp, layer.input_layernorm, layer.post_attention_layernorm)
        kinds = (llama.LlamaDecoderLayer, llama.LlamaAttention, llama.LlamaMLP, llama.LlamaRMSNorm,
                 llama.LlamaRMSNorm)
        if any(type(part) is not kind for part, kind in zip(parts, kinds)):
            return None
    return LlamaForward(body)
