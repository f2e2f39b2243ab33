"""The one-node LoRA layer used in training: peft's loss and gradients, and peft's own forward wherever the
layer is not the plain case it computes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from collab.config import TrainSettings
from guides.train import add_lora, collate
from test_train import _loss_and_grads, examples, tiny_llama


def _lora_model(dropout: float = 0.0):
    model = add_lora(tiny_llama(), dataclasses.replace(TrainSettings(), lora_r=4, lora_dropout=dropout))
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would leave A's gradient zero too
            param.data.normal_(0, 0.3)
    return model.train()


def _layers(model):
    from peft.tuners.lora import Linear

    return [m for m in model.modules() if isinstance(m, Linear)]


def test_the_one_node_layer_gives_peft_s_loss_and_gradients():
    model = _lora_model()
    layers = _layers(model)
    assert layers and all("forward" in vars(layer) for layer in layers)
    x = torch.randn(2, 3, layers[0].in_features, requires_grad=True)
    assert type(layers[0](x).grad_fn).__name__ == "_LoraProductBackward"
    loss, grads = _loss_and_grads(model, collate(examples(6)))
    for layer in layers:
        del layer.forward  # peft's own
    assert type(layers[0](x).grad_fn).__name__ != "_LoraProductBackward"
    peft_loss, peft_grads = _loss_and_grads(model, collate(examples(6)))
    assert loss == pytest.approx(peft_loss, rel=1e-6)
    assert grads.keys() == peft_grads.keys() and any("lora_A" in n for n in grads)
    for name in grads:
        assert grads[name].abs().sum() > 0
        torch.testing.assert_close(grads[name], peft_grads[name], rtol=1e-4, atol=1e-5)


def test_layers_it_does_not_compute_keep_peft_s_forward():
    dropout = _layers(_lora_model(dropout=0.1))[0]
    x = torch.randn(2, 3, dropout.in_features)
    assert type(dropout(x).grad_fn).__name__ != "_LoraProductBackward"
    model = _lora_model()
    layer = _layers(model)[0]
    with model.disable_adapter():
        assert torch.equal(layer(x), layer.base_layer(x))
    layer.merge()
    assert type(layer(x).grad_fn).__name__ != "_LoraProductBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(_layers(_lora_model())[0](x).grad_fn).__name__ != "_LoraProductBackward"
