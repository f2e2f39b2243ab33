import argparse
from pathlib import Path

import pytest

from collab.config import Config, add_config_flags, config_from_args


def parse(argv, config_file=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_flags(parser, ["schema", "batch_size", "four_bit", "cache_dir", "tail_coverage"])
    args = parser.parse_args(([f"--config={config_file}"] if config_file else []) + argv)
    return config_from_args(args)


def test_defaults_then_file_then_flags(tmp_path):
    assert parse([]) == Config()
    toml = tmp_path / "c.toml"
    toml.write_text('schema = "characters"\nbatch_size = 4\nfour_bit = true\n')
    assert parse([], toml).schema == "characters" and parse([], toml).four_bit is True
    config = parse(["--batch-size", "2", "--no-four-bit", "--cache-dir", str(tmp_path)], toml)
    assert (config.schema, config.batch_size, config.four_bit, config.cache_dir) == ("characters", 2, False, tmp_path)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("tail_coverage: 0.9\n")
    assert parse([], yaml_file).tail_coverage == 0.9


def test_every_field_is_a_flag():
    parser = argparse.ArgumentParser()
    names = list(Config.__dataclass_fields__)
    add_config_flags(parser, names)
    flags = {a.dest for a in parser._actions}
    assert set(names) <= flags


@pytest.mark.parametrize("text, message", [
    ('batch_size = "many"', r"c.toml: batch_size: Input should be a valid integer"),
    ('bogus = 1', r"c.toml: bogus: Unexpected keyword argument"),
    ('schema = ', r"c.toml: cannot read config"),
    ('edge_frequent = 15', r"c.toml: edge_frequent is a share of a book's pair sentences, from 0 up to 1, not 15"),
])
def test_bad_config_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=message) as info:
        Config.load(path)
    assert "\n" not in str(info.value)


def test_replace_validates():
    assert Config().replace(batch_size="3").batch_size == 3
    assert isinstance(Config().replace(shared="x").shared, Path)
    with pytest.raises(ValueError):
        Config().replace(seed="x")


def test_the_readme_lists_every_config_field():
    """The README's one-screen list of settings is how users find a flag; a new field must appear in it."""
    import dataclasses
    import re
    from pathlib import Path

    from collab.config import Config

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listing = readme[readme.index("shared, cache_dir,"):]
    listing = listing[:listing.index("```")]
    listed = set(re.findall(r"\b([a-z][a-z0-9_]*)\b(?:=|,|\s|$)", listing))
    assert [f.name for f in dataclasses.fields(Config) if f.name not in listed] == []


def test_cores_are_the_threads_setting_else_the_cores_this_process_may_use(monkeypatch):
    import os

    assert Config(threads=3).cores == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert Config().cores == 2  # a container's cpuset, not the machine's 64 cores
    monkeypatch.delattr(os, "sched_getaffinity")
    assert Config().cores == 64
