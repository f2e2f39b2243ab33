"""Prompt templates: deterministic rendering, strict variables, clear errors, content hashes."""
from __future__ import annotations

import hashlib
import os

import pytest

from collab.prompts import PROMPTS_DIR, PromptError, available_templates, load_template, render

PAIR = {"text": "The kitchen was filled with smoke from the stove.", "head": "smoke", "tail": "stove"}
LABELS = ["Cause-Effect(e2,e1)", "Entity-Origin(e1,e2)", "no_relation"]


def _write(root, name, body):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


TINY = """id: test/tiny
version: {version}
description: a test template
system: "Answer with one word{suffix}."
user: "Q: {{{{ question }}}}"
"""


def test_zero_shot_renders_the_seed_paper_layout():
    rendered = render("slm/zero_shot.v1", **PAIR)
    assert rendered.template == "slm/zero_shot.v1"
    assert [m["role"] for m in rendered.messages] == ["system", "user"]
    assert rendered.messages[1]["content"] == (
        "Sentence: The kitchen was filled with smoke from the stove.\nEntity 1: smoke\nEntity 2: stove\nRelation:")
    assert "relation" in rendered.messages[0]["content"].lower()


def test_rendering_is_deterministic_and_sha_is_the_file_hash():
    first = render("slm/schema_enum.v1", labels=LABELS, **PAIR)
    second = render("slm/schema_enum.v1", labels=LABELS, **PAIR)
    assert first == second
    expected = hashlib.sha256((PROMPTS_DIR / "slm" / "schema_enum.v1.yaml").read_bytes()).hexdigest()
    assert first.sha == expected


def test_schema_enum_lists_the_allowed_labels():
    system = render("slm/schema_enum.v1", labels=LABELS, **PAIR).messages[0]["content"]
    assert ", ".join(LABELS) in system


def test_missing_variable_is_an_error_naming_it():
    with pytest.raises(PromptError, match="'tail' is undefined"):
        render("slm/zero_shot.v1", text="x", head="y")
    with pytest.raises(PromptError, match="labels"):
        render("slm/schema_enum.v1", **PAIR)


def test_unknown_template_lists_the_available_ones():
    with pytest.raises(PromptError) as info:
        render("slm/does_not_exist.v1", **PAIR)
    assert "slm/zero_shot.v1" in str(info.value) and "slm/schema_enum.v1" in str(info.value)
    with pytest.raises(PromptError, match="available"):
        render("not a name", **PAIR)


def test_schema_files_are_not_templates():
    names = available_templates()
    assert "slm/zero_shot.v1" in names and "slm/schema_enum.v1" in names
    assert not any(name.startswith("schemas/") for name in names)


def test_demonstrations_become_earlier_turns():
    demo = {"text": "Sparks came from the wire.", "head": "Sparks", "tail": "wire", "relation": "Entity-Origin(e1,e2)"}
    rendered = render("slm/zero_shot.v1", demonstrations=[demo], **PAIR)
    assert [m["role"] for m in rendered.messages] == ["system", "user", "assistant", "user"]
    assert rendered.messages[1]["content"].startswith("Sentence: Sparks came from the wire.")
    assert rendered.messages[2]["content"] == "Entity-Origin(e1,e2)"
    assert "smoke" in rendered.messages[3]["content"]


def test_sha_changes_when_the_file_changes(tmp_path):
    path = _write(tmp_path, "test/tiny.v1.yaml", TINY.format(version=1, suffix=""))
    before = load_template("test/tiny.v1", root=tmp_path)
    assert before.render(question="why?").messages[1]["content"] == "Q: why?"
    path.write_text(TINY.format(version=1, suffix=" only"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    after = load_template("test/tiny.v1", root=tmp_path)
    assert after.sha != before.sha
    assert after.sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert after.render(question="why?").messages[0]["content"] == "Answer with one word only."


def test_name_without_version_picks_the_highest(tmp_path):
    _write(tmp_path, "test/tiny.v1.yaml", TINY.format(version=1, suffix=""))
    _write(tmp_path, "test/tiny.v2.yaml", TINY.format(version=2, suffix="!"))
    assert load_template("test/tiny", root=tmp_path).template == "test/tiny.v2"
    assert available_templates(tmp_path) == ["test/tiny.v1", "test/tiny.v2"]


def test_mismatched_id_or_bad_yaml_is_reported(tmp_path):
    _write(tmp_path, "test/tiny.v3.yaml", TINY.format(version=1, suffix=""))
    with pytest.raises(PromptError, match="do not match the file name"):
        load_template("test/tiny.v3", root=tmp_path)
    _write(tmp_path, "test/broken.v1.yaml", "id: test/broken\nversion: 1\nuser: [unclosed\n")
    with pytest.raises(PromptError, match="not valid YAML"):
        load_template("test/broken.v1", root=tmp_path)
    _write(tmp_path, "test/syntax.v1.yaml", "id: test/syntax\nversion: 1\nuser: '{{ oops '\n")
    with pytest.raises(PromptError, match="TemplateSyntaxError"):
        load_template("test/syntax.v1", root=tmp_path)
