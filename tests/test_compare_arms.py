"""The arms the papers ran, in ``compare-tf --settings``: ``feed=uniform`` (the noise control)
and the presets ``bengio``, ``always-sampling`` and ``zhang-word``."""

import pytest

from seq2seq import config
from seq2seq.compare.options import PRESETS, build_parser
from seq2seq.compare.settings import (apply_setting, parse_setting, parse_settings,
                                      schedule_summary)
from seq2seq.errors import UserError

#: a base config whose teacher forcing a preset must not inherit
BASE = ["teacher_forcing.min=0.75", "teacher_forcing.feed=argmax",
        "teacher_forcing.temperature=0.5", "teacher_forcing.unit=step"]


def resolved(text, steps=1000, per_epoch=100):
    """The run config's teacher forcing and what its schedule does over ``steps`` updates."""
    tf = apply_setting(config.load(None, BASE), parse_setting(text), seed=1).teacher_forcing
    return tf, schedule_summary(tf, per_epoch, steps, steps // per_epoch)


def test_feed_uniform_is_a_setting_key():
    s = parse_setting("constant:0.5,feed=uniform")
    assert s.label == "constant:0.5,feed=uniform"
    tf, summary = resolved(s.label)
    assert tf.feed == "uniform" and tf.ratio == 0.5
    assert "feed=uniform" in summary["schedule"]


def test_bengio_samples_and_decays_from_about_one_to_zero():
    tf, summary = resolved("bengio")
    assert (tf.schedule, tf.feed, tf.temperature, tf.min, tf.unit) == (
        "inverse_sigmoid", "sample", 1.0, 0.0, "step")
    ratios = summary["ratios"]
    assert ratios[0] >= 0.95 and ratios[-1] <= 0.05  # toward 0, not the base's 0.75 floor
    assert all(b <= a for a, b in zip(ratios, ratios[1:]))


def test_always_sampling_never_feeds_gold():
    tf, summary = resolved("always-sampling")
    assert tf.feed == "sample" and tf.temperature == 1.0
    assert summary["ratio_start"] == summary["ratio_end"] == summary["ratio_mean"] == 0.0


def test_zhang_word_decays_per_epoch():
    tf, summary = resolved("zhang-word", steps=1000, per_epoch=100)
    assert tf.unit == "epoch" and tf.feed == "sample" and tf.temperature == 1.0
    ratios = summary["ratios"]
    epochs = [ratios[i:i + 100] for i in range(0, 1000, 100)]
    assert all(len(set(e)) == 1 for e in epochs)  # one probability per epoch
    firsts = [e[0] for e in epochs]
    assert firsts[0] >= 0.9 and firsts[-1] <= 0.1
    assert all(b < a for a, b in zip(firsts, firsts[1:]))


def test_a_preset_takes_overrides_and_keeps_a_short_label():
    s = parse_setting("bengio:k=50,feed=uniform")
    assert s.label == "bengio:k=50,feed=uniform"
    assert s.keys == {**PRESETS["bengio"], "k": 50, "feed": "uniform"}
    tf, _ = resolved(s.label)
    assert tf.k == 50 and tf.feed == "uniform" and tf.temperature == 1.0
    assert [x.label for x in parse_settings(["constant:1.0 bengio always-sampling zhang-word"])
            ] == ["constant:1.0", "bengio", "always-sampling", "zhang-word"]


@pytest.mark.parametrize("text, words", [
    ("bengo", "did you mean 'bengio'"),
    ("bengio:0.5", "expected key=value"),
    ("bengio:k=5,k=6", "k is given twice"),
    ("zhang-word:feed=noise", "feed"),
])
def test_bad_presets(text, words):
    with pytest.raises(UserError, match=words):
        apply_setting(config.Config(), parse_setting(text), seed=1)


def test_help_documents_the_arms():
    text = build_parser("compare-tf").format_help()
    for word in ("feed (argmax|sample|uniform)", "bengio", "always-sampling", "zhang-word",
                 "noise control", "Example: --settings constant:1.0 bengio"):
        assert word in text, word


def test_compare_tf_on_a_toy_task_reports_exaccerr_per_arm_and_scored_set(tmp_path,
                                                                          monkeypatch, capsys):
    """A tiny reverse comparison, the noise control against teacher forcing: exaccerr.csv per
    arm, seed, scored set (validation, test, an extra set) and position, a plot per arm, the
    totals in runs.csv; ExAccErr is 0 at the first position (the same BOS prefix both ways)."""
    import csv

    from seq2seq.compare import runs, study
    from seq2seq.data import toy

    monkeypatch.setattr(runs, "toy_dataset", lambda task, seed: toy.reverse(
        seed, task=task, max_len=6, train_size=300, valid_size=30, test_size=31))
    monkeypatch.chdir(tmp_path)
    extra = tmp_path / "x.src", tmp_path / "x.tgt"
    extra[0].write_text("a b c\nd e\n")
    extra[1].write_text("c b a\ne d\n")
    args = ["--toy", "reverse", "--settings", "constant:1.0", "constant:0.5,feed=uniform",
            "--beam-sizes", "1", "--out", "cmp", "--no-progress",
            "--extra-test", f"x={extra[0]},{extra[1]}",
            "--set", "model.embedding_dim=8", "--set", "model.hidden_size=8",
            "--set", "train.max_steps=4", "--set", "train.eval_every=2",
            "--set", "train.warmup_steps=0"]
    assert study.main(args) == 0
    assert "lr_schedule" not in capsys.readouterr().err  # the recipe's cosine: no warning
    assert study.main(args + ["--set", "train.lr_schedule=plateau", "--out", "cmp2"]) == 0
    assert capsys.readouterr().err.count("warning: train.lr_schedule is plateau") == 1
    out = tmp_path / "cmp"
    rows = list(csv.DictReader(open(out / "exaccerr.csv")))
    assert {(r["setting"], r["set"]) for r in rows} == {
        (s, x) for s in ("constant:1.0", "constant:0.5,feed=uniform")
        for x in ("validation", "test", "x")}
    assert [k for k in rows[0] if k.startswith("exaccerr")] == [
        "exaccerr", "exaccerr_pct", "exaccerr_lo", "exaccerr_hi"]
    for r in rows:
        assert float(r["exaccerr_lo"]) <= float(r["exaccerr"]) + 1e-3
        assert float(r["exaccerr"]) <= float(r["exaccerr_hi"]) + 1e-3
        if r["position"] == "1":
            assert float(r["exaccerr"]) == pytest.approx(0.0, abs=1e-3)
    probes = list(csv.DictReader(open(out / "injection.csv")))
    assert {(r["how"], r["k"], r["t"]) for r in probes} == {
        (h, k, t) for h in ("gold", "random", "second") for k in ("1", "2", "4")
        for t in ("2", "5", "10")}
    assert len(probes) == 2 * 3 * 27  # arms x scored sets x (how, k, t)
    assert all(0 <= float(r["acc"]) <= 100 and int(r["n"]) >= 0 for r in probes)
    runs_csv = list(csv.DictReader(open(out / "runs.csv")))
    assert all("exaccerr_total_test" in r and "exaccerr_total_pct_x" in r for r in runs_csv)
    assert all(0 <= float(r[f"hallucination_rate_{x}"]) <= 100 for r in runs_csv
               for x in ("test", "x"))  # exact on reverse, per scored set
    for slug in ("constant-1.0", "constant-0.5-feeduniform"):
        assert (out / f"exaccerr-{slug}.png").stat().st_size > 1000
    assert (out / "exaccerr.png").stat().st_size > 1000  # every arm, a panel per scored set
    before = (out / "exaccerr.csv").read_text(), (out / "injection.csv").read_text()
    assert study.main(args) == 0  # again: every run reused, the same curves from result.json
    assert capsys.readouterr().err.count("reusing the finished run") == 2
    assert ((out / "exaccerr.csv").read_text(), (out / "injection.csv").read_text()) == before


def test_the_plateau_learning_rate_schedule_is_warned_about():
    """It reacts to each arm's own validation; a fixed schedule is the way out, and is quiet."""
    from seq2seq.compare.settings import lr_schedule_warning

    warning = lr_schedule_warning(config.load(None, ["train.lr_schedule=plateau"]))
    assert warning.startswith("warning:") and "\n" not in warning
    assert "--set train.lr_schedule=constant" in warning
    for fixed in ("constant", "cosine"):
        assert lr_schedule_warning(config.load(None, [f"train.lr_schedule={fixed}"])) is None
