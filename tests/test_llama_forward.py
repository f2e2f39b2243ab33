"""guides.llama_forward: the lean Llama body computes what transformers' body computes (hidden states and cache),
from a cached prefix, with a custom 4D mask and position ids, and is refused for other decoders."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _tiny_llama(attention: str = "sdpa", **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2,
                    attn_implementation=attention)
    settings.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**settings)).double().eval()


def _masked_batch():
    """Two rows after a 5-token prefix: the first left-padded by two, the second with two pairs whose rests see the
    common part and themselves only (as guides.scoring lays out sentences shared by several pairs)."""
    ids = torch.tensor([[0, 0, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26]])
    positions = torch.tensor([[5, 5, 5, 6, 7, 8], [5, 6, 7, 8, 7, 8]])
    own = torch.ones((2, 6, 6), dtype=torch.bool).tril()
    own[0, :, :2] = False                 # nobody sees the padding
    own[0, :2, :2] = torch.eye(2, dtype=torch.bool)  # a padding query sees itself; its output is never used
    own[1, 4:, 2:4] = False               # the second pair's rest does not see the first pair's
    visible = torch.cat([torch.ones((2, 6, 5), dtype=torch.bool), own], dim=2)[:, None]
    return ids, positions, visible


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_the_lean_body_gives_transformers_hidden_states_and_cache(kv_heads):
    from guides.llama_forward import LlamaForward, llama_forward

    model = _tiny_llama(num_key_value_heads=kv_heads)
    body = model.get_decoder()
    lean = llama_forward(body)
    assert isinstance(lean, LlamaForward)
    prefix = torch.tensor([[1, 2, 3, 4, 5]])
    ids, positions, visible = _masked_batch()
    results = []
    with torch.inference_mode():
        for run in (body, lean):
            cache = run(input_ids=prefix, use_cache=True).past_key_values
            cache.batch_repeat_interleave(2)
            out = run(input_ids=ids, attention_mask=visible, position_ids=positions, past_key_values=cache,
                      use_cache=True)
            results.append((out.last_hidden_state, out.past_key_values))
    (expected, expected_cache), (got, got_cache) = results
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    for want, have in zip(expected_cache.layers, got_cache.layers):
        torch.testing.assert_close(have.keys, want.keys, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(have.values, want.values, rtol=1e-10, atol=1e-10)


def test_other_decoders_keep_their_own_forward():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from guides.llama_forward import llama_forward

    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2))
    assert llama_forward(qwen.get_decoder()) is None
    assert llama_forward(_tiny_llama(hidden_act="gelu").get_decoder()) is None
    assert llama_forward(_tiny_llama("eager").get_decoder()) is None  # its softmax is float32 in any dtype
    assert llama_forward(_tiny_llama().to("meta").get_decoder()) is None  # measured on the CPU only
    llama = _tiny_llama()
    llama.model.layers[0].mlp = torch.nn.Identity()  # a layer rebuilt from parts it was not written for
    assert llama_forward(llama.get_decoder()) is None
    hooked = _tiny_llama()
    hooked.model.layers[1].self_attn.o_proj.register_forward_hook(lambda module, args, out: out * 2)
    assert llama_forward(hooked.get_decoder()) is None  # it calls `forward` itself: hooks would not run


def test_adapters_inside_the_projections_still_apply():
    from peft import LoraConfig, get_peft_model

    from guides.llama_forward import llama_forward

    model = get_peft_model(_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # zero at initialisation: the adapter would change nothing
                parameter.normal_(0, 0.5)
    body = model.get_base_model().get_decoder()
    lean = llama_forward(body)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.inference_mode():
        expected = body(input_ids=ids).last_hidden_state
        with model.disable_adapter():
            bare = body(input_ids=ids).last_hidden_state
        got = lean(input_ids=ids).last_hidden_state
    assert (expected - bare).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_a_2d_mask_is_refused_with_a_clear_error():
    from guides.llama_forward import llama_forward

    lean = llama_forward(_tiny_llama().get_decoder())
    with pytest.raises(ValueError, match="4D attention mask"):
        lean(input_ids=torch.tensor([[1, 2, 3]]), attention_mask=torch.ones((1, 3), dtype=torch.long))
