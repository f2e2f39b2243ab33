import json

from conftest import pair_record

from collab.cli import main


def gold_and_pred(write_jsonl, rows):
    """rows: (gold, predicted) labels; the sentence is the same fixture for each."""
    gold = write_jsonl([pair_record(f"g{i}", relation=g) for i, (g, _) in enumerate(rows)], "gold.jsonl")
    pred = write_jsonl([{"id": f"g{i}", "relation": p, "confidence": 0.5, "route": "slm"}
                        for i, (_, p) in enumerate(rows)], "pred.jsonl")
    return gold, pred


def test_help_lists_the_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "predict", "eval", "datasets", "labels", "validate"):
        assert command in out


def test_eval_json_matches_hand_computed_figures(write_jsonl, capsys, tmp_path):
    gold, pred = gold_and_pred(write_jsonl, [
        ("Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)"),   # TP Cause-Effect(e1,e2)
        ("Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"),   # direction error: FN (e1,e2) + FP (e2,e1)
        ("Message-Topic(e1,e2)", "no_relation"),          # FN Message-Topic
        ("no_relation", "Entity-Origin(e1,e2)"),          # FP Entity-Origin
        ("no_relation", "no_relation"),                   # nothing
        ("Message-Topic(e1,e2)", "Friendship(e1,e2)"),    # outside the label set: FN + FP
    ])
    # TP 1, FP 3, FN 3 → P = 1/4, R = 1/4, F1 = 1/4.
    # Per gold label: Cause-Effect(e1,e2) P 1/1 R 1/2 F1 2/3; Message-Topic(e1,e2) F1 0 → macro = 1/3.
    assert main(["eval", "--gold", str(gold), "--pred", str(pred), "--schema", "semeval", "--json",
                 "--cache-dir", str(tmp_path / "cache"), "--report", str(tmp_path / "report")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 6
    assert abs(result["micro_f1"] - 0.25) < 1e-9 and abs(result["macro_f1"] - 1 / 3) < 1e-9
    assert abs(result["per_label"]["Cause-Effect(e1,e2)"]["f1"] - 2 / 3) < 1e-9
    assert abs(result["schema_valid_rate"] - 5 / 6) < 1e-9
    assert result["head_micro_f1"] is not None and result["tail_micro_f1"] is not None
    assert {"micro_f1", "macro_f1", "head_micro_f1", "tail_micro_f1", "per_label", "n"} <= set(result)
    assert (tmp_path / "report" / "summary.md").is_file() and (tmp_path / "report" / "confusion.png").is_file()


def test_eval_names_missing_ids(write_jsonl, capsys):
    gold = write_jsonl([pair_record("a"), pair_record("b")], "gold.jsonl")
    pred = write_jsonl([{"id": "a", "relation": "no_relation"}, {"id": "z", "relation": "no_relation"}], "pred.jsonl")
    assert main(["eval", "--gold", str(gold), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "b" in err and "z" in err and err.count("\n") == 1


def test_validate_reports_bad_line_or_skips(write_jsonl, capsys):
    path = write_jsonl([pair_record("a"), '{"id": "b"}', pair_record("c")])
    assert main(["validate", "--data", str(path)]) == 2
    assert f"{path}:2: text: missing" in capsys.readouterr().err
    assert main(["validate", "--data", str(path), "--skip-invalid", "--schema", "semeval"]) == 0
    assert "2 pairs ok, 1 invalid lines skipped" in capsys.readouterr().out


def test_labels_and_datasets_commands(capsys, tmp_path):
    assert main(["labels", "--schema", "characters", "--json", "--cache-dir", str(tmp_path)]) == 0
    labels = json.loads(capsys.readouterr().out)
    assert labels["schema"] == "characters.v1" and "parent_of" in labels["head"] + labels["tail"]
    assert main(["datasets", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["semeval2010_task8/test.jsonl"]["ok"] == 2717


class _FakeScorer:
    """Predicts the first label for every pair; can die after a number of pairs, like an interrupted run."""

    def __init__(self, die_after=None):
        self.die_after, self.seen = die_after, []

    def iter_predict(self, pairs, batch_size=8):
        from collab.data import Prediction

        for pair in pairs:
            if self.die_after is not None and len(self.seen) == self.die_after:
                raise KeyboardInterrupt
            self.seen.append(pair.id)
            yield Prediction(id=pair.id, relation="Cause-Effect(e1,e2)", confidence=0.9, margin=0.5,
                             distribution={"Cause-Effect(e1,e2)": 0.9}, route="slm")


def test_interrupted_predict_resumes_without_redoing_pairs(write_jsonl, tmp_path, monkeypatch, capsys):
    from collab import api

    data = write_jsonl([pair_record(f"p{i}") for i in range(5)])
    out = tmp_path / "pred.jsonl"
    args = ["predict", "--data", str(data), "--out", str(out), "--guide", "none", "--cache-dir", str(tmp_path)]
    dying = _FakeScorer(die_after=3)
    monkeypatch.setattr(api, "scorer_for", lambda config, schema: dying)
    assert main(args) == 130
    assert not out.exists()
    resumed = _FakeScorer()
    monkeypatch.setattr(api, "scorer_for", lambda config, schema: resumed)
    assert main(args) == 0
    assert resumed.seen == ["p3", "p4"]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [f"p{i}" for i in range(5)]
    assert "resuming: 3 of 5" in capsys.readouterr().err


def test_a_missing_model_is_a_one_line_error(write_jsonl, tmp_path, capsys):
    data = write_jsonl([pair_record("p0")])
    assert main(["predict", "--data", str(data), "--out", str(tmp_path / "p.jsonl"), "--guide", "none",
                 "--model", str(tmp_path / "no-such-model"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model not found:") and "\n" not in err


def test_an_unknown_guide_is_a_one_line_error(write_jsonl, tmp_path, capsys):
    data = write_jsonl([pair_record("p0")])
    assert main(["predict", "--data", str(data), "--out", str(tmp_path / "p.jsonl"), "--guide",
                 str(tmp_path / "nothing-here"), "--cache-dir", str(tmp_path)]) == 2
    assert "not a guide folder" in capsys.readouterr().err


def test_a_commands_own_default_yields_to_the_config_file_and_the_flag(tmp_path):
    from collab.cli import build_parser
    from collab.config import config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["books"])).schema == "characters"
    assert config_from_args(parser.parse_args(["predict", "--data", "x", "--out", "y"])).schema == "semeval"
    config_file = tmp_path / "c.yaml"
    config_file.write_text("schema: conll04\n")
    assert config_from_args(parser.parse_args(["books", "--config", str(config_file)])).schema == "conll04"
    assert config_from_args(parser.parse_args(["books", "--config", str(config_file), "--schema", "semeval"])
                            ).schema == "semeval"
    assert config_from_args(parser.parse_args(["train", "--out", "g"])).prompt == "slm/guide.v1"
    # the train command's --batch-size is the training settings' (unset: one pass, see fit_micro_batch);
    # calibration scores dev at the scoring default of 8
    assert not hasattr(parser.parse_args(["train", "--out", "g"]), "batch_size")
    assert parser.parse_args(["train", "--out", "g", "--batch-size", "8"]).batch_size == "8"
    assert config_from_args(parser.parse_args(["train", "--out", "g"])).batch_size == 8
    assert config_from_args(parser.parse_args(["predict", "--data", "x", "--out", "y"])).batch_size == 8


def test_train_batch_size_reaches_the_encoder_trainer(monkeypatch, write_jsonl, tmp_path):
    import guides.encoder

    seen = {}
    monkeypatch.setattr(guides.encoder, "train_encoder", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(guides.encoder, "calibrate_encoder", lambda *a: {
        "dev": {"micro_f1": 0.5, "ece_before": 0.1, "ece_after": 0.1}, "temperature": 1.0})
    data = str(write_jsonl([pair_record("a"), pair_record("b")]))
    args = ["train", "--kind", "encoder", "--data", data, "--dev", data, "--out", str(tmp_path / "g")]
    assert main(args + ["--batch-size", "32", "--lr", "1e-3"]) == 0
    assert (seen["batch_size"], seen["lr"]) == (32, 1e-3)
    seen.clear()
    assert main(args) == 0 and "batch_size" not in seen  # unset: the encoder's own default
