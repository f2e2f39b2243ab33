"""The training speed benchmark's count of model FLOPs, against the products torch runs and a walk over the
attention keys."""
import importlib.util
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, mm_flop

from collab.config import TrainSettings
from guides.train import add_lora, backward_micro_batch, collate
from test_train import PREFIX, _prefixed, examples, tiny_llama

_spec = importlib.util.spec_from_file_location(
    "train_speed", Path(__file__).resolve().parent.parent / "benchmarks" / "train_speed.py")
train_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_speed)


def _lora_model():
    model = add_lora(tiny_llama(), TrainSettings(lora_r=4))
    model.train()
    return model, [p for p in model.parameters() if p.requires_grad]


def _products_run(model, params, data) -> int:
    """The matrix products' FLOPs torch runs for one micro-batch's forward and backward pass."""
    def addmm_(self, a, b, *args, out_shape=None, **kwargs):  # in place: not in torch's own table
        return mm_flop(a, b)

    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_}) as counter:
        backward_micro_batch(model, params, data, PREFIX, 1.0)
    counts = counter.get_flop_counts()["Global"]
    return sum(counts.get(op, 0) for op in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_))


def _keys_walked(data, prefix) -> int:
    """Each prefix token sees the prefix up to itself; each example's own token the prefix and its own tokens
    up to itself."""
    k = len(prefix)
    seen = sum(i + 1 for i in range(k))
    for e in data:
        seen += sum(k + j + 1 for j in range(len(e.ids) - k))
    return seen


def test_model_flops_are_the_products_run_and_the_attention_keys_seen():
    model, params = _lora_model()
    data = _prefixed(examples(6))
    assert collate(data, PREFIX)["blocks"].prefix == len(PREFIX)  # the batch shares its prefix
    config = model.get_base_model().config
    per_key = 12 * config.num_attention_heads * (config.hidden_size // config.num_attention_heads) \
        * config.num_hidden_layers
    counted = train_speed.step_flops(model, data[0], [train_speed.ran_as(data, PREFIX, 1)])
    assert counted == _products_run(model, params, data) + per_key * _keys_walked(data, PREFIX)


def test_a_micro_batch_run_in_parts_counts_its_shared_prefix_once():
    model, _ = _lora_model()
    data = _prefixed(examples(8))
    parts = train_speed.ran_as(data, PREFIX, 2)
    assert len(parts) == 2 and all(part["blocks"].prefix == len(PREFIX) for part in parts)
    whole = train_speed.step_flops(model, data[0], [train_speed.ran_as(data, PREFIX, 1)])
    assert train_speed.step_flops(model, data[0], [parts]) == whole
    # two micro-batches each count their own prefix
    assert train_speed.step_flops(model, data[0], [parts, parts]) == 2 * whole
