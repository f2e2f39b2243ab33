"""The speed benchmark's count of attention work, against a count made token by token."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

_spec = importlib.util.spec_from_file_location("speed", Path(__file__).resolve().parent.parent / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speed)

PREFIX = [90, 91]
PROMPTS = {"a": [90, 91, 1, 2, 3], "b": [90, 91, 1, 2, 4], "c": [90, 91, 7]}


def attention_flops(share: bool, pairs) -> float:
    scorer = fake_scorer(share)
    return speed.attention_flops(scorer, speed.prompt_rests_by_text(scorer, pairs))


def fake_scorer(share: bool):
    config = SimpleNamespace(num_attention_heads=2, head_dim=3, hidden_size=6, num_hidden_layers=2)
    return SimpleNamespace(shared_prefix=PREFIX, share_sentences=share, tree=False, continuations=[[5], [6, 7, 8]],
                           prompt_ids=lambda pair: PROMPTS[pair.id], model=SimpleNamespace(config=config))


def keys_seen(share: bool) -> int:
    """Walk the fed tokens one by one: each sees the prefix, the earlier tokens of its own prompt and itself; a
    label token also sees the label tokens before it."""
    seen = sum(i + 1 for i in range(len(PREFIX)))
    rows = {"one sentence": [PROMPTS["a"], PROMPTS["b"]], "another": [PROMPTS["c"]]}
    for prompts in rows.values():
        fed_once = set()  # positions of the row's common part, fed once for all its prompts
        for ids in prompts:
            for position in range(len(PREFIX), len(ids)):
                common = share and all(position < len(p) - 1 and p[:position + 1] == ids[:position + 1]
                                       for p in prompts)
                if common:
                    if position in fed_once:
                        continue
                    fed_once.add(position)
                seen += position + 1
            seen += sum(len(ids) + depth + 1 for depth in (0, 1))  # continuation [6, 7, 8] feeds 6 and 7
    return seen


@pytest.mark.parametrize("share", [True, False])
def test_attention_flops_match_a_token_by_token_count(share):
    pairs = [SimpleNamespace(id="a", text="one sentence"), SimpleNamespace(id="b", text="one sentence"),
             SimpleNamespace(id="c", text="another")]
    expected = 4 * 2 * 3 * 2 * keys_seen(share)
    assert attention_flops(share, pairs) == expected
    assert speed.label_nodes(fake_scorer(share)) == 2


def test_sharing_a_sentence_saves_attention_work():
    pairs = [SimpleNamespace(id="a", text="one sentence"), SimpleNamespace(id="b", text="one sentence")]
    assert attention_flops(True, pairs) < attention_flops(False, pairs)
