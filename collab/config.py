"""One typed configuration: defaults on one screen, loadable from TOML or YAML, CLI flags map one to one.

Every field below is also a command-line flag (`cache_dir` → `--cache-dir`); a flag given on the command
line overrides the value from `--config FILE`, which overrides the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    __pydantic_config__ = ConfigDict(extra="forbid")

    shared: Path | None = _opt(None, "folder holding datasets/ (default: ../shared beside the repo, or $COLLAB_SHARED)")
    cache_dir: Path | None = _opt(None, "cache root for models, indexes, LLM replies and stage outputs "
                                        "(default: the user cache dir, or $COLLAB_CACHE_DIR)")
    schema: str = _opt("semeval", "relation schema: a name in prompts/schemas (semeval, conll04, characters) or a YAML path")
    model: str = _opt("smollm2", "small model: smollm2, gemma3-270m, a .gguf file or a Hugging Face model folder")
    prompt: str = _opt("slm/schema_enum.v1", "prompt template for the small model (prompts/<group>/<name>.v<N>.yaml)")
    four_bit: bool = _opt(False, "load the small model in 4-bit NF4 (bitsandbytes)")
    batch_size: int = _opt(8, "pairs per batch")
    threads: int = _opt(0, "torch CPU threads (0 = all cores)")
    seed: int = _opt(13, "random seed")
    skip_invalid: bool = _opt(False, "skip and count invalid input lines instead of stopping at the first")
    tail_coverage: float = _opt(0.8, "head labels = most frequent labels covering this share of positive training pairs")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Config:
        try:
            return TypeAdapter(cls).validate_python(values)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{source}: {where}: {first['msg']}") from None

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Config:
        values: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            try:
                text = path.read_text(encoding="utf-8")
                values = tomllib.loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
            except (OSError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
                raise ValueError(f"{path}: cannot read config: {e}".replace("\n", " ")) from None
            if not isinstance(values, dict):
                raise ValueError(f"{path}: a config file must hold a table of settings")
        return cls.from_dict({**values, **overrides}, str(path or "command line"))

    def replace(self, **changes: Any) -> Config:
        return Config.from_dict({**dataclasses.asdict(self), **changes})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Add one flag per named Config field; absent flags stay absent so the config file's value holds."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name in names:
        f = fields[name]
        help_text = f"{f.metadata['help']} [default: {f.default}]"
        # Values go in as strings; pydantic converts them to the field's type and reports bad ones.
        if f.type == "bool":
            parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag(name), dest=name, type=str, default=argparse.SUPPRESS, help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    names = {f.name for f in dataclasses.fields(Config)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return Config.load(getattr(args, "config", None), **overrides)
