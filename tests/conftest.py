import os

# Nothing in the tests may reach a model hub; set before transformers is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One cache folder per test session for converted models (COLLAB_TEST_CACHE_DIR keeps it between runs)."""
    configured = os.environ.get("COLLAB_TEST_CACHE_DIR")
    return Path(configured) if configured else tmp_path_factory.getbasetemp() / "collab-model-cache"


@pytest.fixture(scope="session")
def smollm2_tokenizer(model_cache):
    from transformers import AutoTokenizer

    from guides.models import ensure_chat_template, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2", model_cache))
    ensure_chat_template(tokenizer)
    return tokenizer


@pytest.fixture
def write_jsonl(tmp_path):
    """Write records (dicts are JSON-encoded, strings written as they are) to a JSONL file in tmp_path."""

    def write(records, name="data.jsonl"):
        path = Path(tmp_path) / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
                        encoding="utf-8")
        return path

    return write


def pair_record(id="p1", text="The fire caused smoke.", head="fire", tail="smoke", relation="Cause-Effect(e1,e2)",
                **extra):
    hs, ts = text.index(head), text.index(tail)
    record = {"id": id, "text": text,
              "head": {"text": head, "start": hs, "end": hs + len(head), "type": None},
              "tail": {"text": tail, "start": ts, "end": ts + len(tail), "type": None},
              "relation": relation, "split": "test", "source": "fixture"}
    record.update(extra)
    return record
