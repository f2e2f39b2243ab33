"""A LoRA linear layer as one autograd node, for training speed on a CPU.

peft computes y = W x + s * B(A x) as five operations (two of them passes over the [tokens, out] output: the
scaling and the sum) and autograd keeps a node for each, with the gradient of x summed from two branches in
another pass. Here the scaled low-rank product is added inside the base product's output (`addmm_`) and the
backward pass writes each gradient once, with the same result up to float rounding (a test compares them). On
SmolLM2's 210 adapted projections a one-thread training step ran 6-8% faster so (BENCHMARKS.md, "Guide
training speed").
"""
from __future__ import annotations

from types import MethodType
from typing import Any

import torch


class _LoraProduct(torch.autograd.Function):
    """y = x W^T + s (x A^T) B^T for x [..., in], W [out, in] frozen, A [r, in], B [out, r]."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                scale: float) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        low = rows @ a.t()
        y = (rows @ weight.t()).addmm_(low, b.t(), alpha=scale)
        ctx.save_for_backward(rows, weight, a, b, low)
        ctx.scale = scale
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, weight, a, b, low = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        g_low = (g @ b).mul_(ctx.scale)
        g_x = (g @ weight).addmm_(g_low, a) if ctx.needs_input_grad[0] else None
        g_a = g_low.t() @ rows if ctx.needs_input_grad[2] else None
        g_b = (g.t() @ low).mul_(ctx.scale) if ctx.needs_input_grad[3] else None
        if g_x is not None:
            g_x = g_x.view(*grad.shape[:-1], weight.shape[1])
        return g_x, None, g_a, g_b, None


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """peft's `lora.Linear.forward` where the layer is one plain, unmerged adapter (no dropout, no variant such
    as DoRA, no biases) over a frozen, bias-free `nn.Linear` of x's dtype, outside autocast; peft's own forward
    otherwise."""
    names = self.active_adapters
    if (args or kwargs or self.disable_adapters or self.merged or len(names) != 1
            or names[0] not in self.lora_A or self.weight.requires_grad):
        return type(self).forward(self, x, *args, **kwargs)
    name = names[0]
    base, a, b = self.base_layer, self.lora_A[name], self.lora_B[name]
    if (type(base) is not torch.nn.Linear or name in self.lora_variant
            or not isinstance(self.lora_dropout[name], torch.nn.Identity)
            or any(layer.bias is not None for layer in (base, a, b))
            or not x.dtype == base.weight.dtype == a.weight.dtype == b.weight.dtype
            or torch.is_autocast_enabled(x.device.type)):  # its backward would meet other dtypes than its forward
        return type(self).forward(self, x, *args, **kwargs)
    return _LoraProduct.apply(x, base.weight, a.weight, b.weight, self.scaling[name])


def fuse_lora_layers(model: Any) -> None:
    """Give each of the peft model's LoRA linear layers the one-node forward."""
    from peft.tuners.lora import Linear

    for layer in model.modules():
        if isinstance(layer, Linear):
            layer.forward = MethodType(_fused_forward, layer)
