"""The teacher-forcing comparison (seq2seq.compare, `seq2seq compare-tf`): settings parsing,
clear errors, an installed package outside the checkout, and one tiny comparison."""

import csv
import os
import json
import random
import shutil
import subprocess
import sys

import pytest

from seq2seq import config

from seq2seq.data import toy
from seq2seq.compare import study
from seq2seq.compare.options import DEFAULT_SETTINGS
from seq2seq.compare.runs import length_buckets
from seq2seq.compare.settings import apply_setting, parse_setting, parse_settings
from seq2seq.decoding.hallucination import hallucination_report
from seq2seq.errors import UserError

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "compare_teacher_forcing.py"


@pytest.mark.parametrize("text, label, keys", [
    ("constant:0.5", "constant:0.5", {"ratio": 0.5}),
    ("constant:ratio=0", "constant:0", {"ratio": 0}),
    ("constant:0.25,feed=sample", "constant:0.25,feed=sample", {"ratio": 0.25, "feed": "sample"}),
    ("constant", "constant", {}),
    ("linear", "linear", {}),
    ("linear:k=1,c=0.001,min=0.1", "linear:k=1,c=0.001,min=0.1", {"k": 1, "c": 0.001, "min": 0.1}),
    ("exponential:k=0.99", "exponential:k=0.99", {"k": 0.99}),
    ("linear:c=1e-3", "linear:c=0.001", {"c": 0.001}),
    ("inverse_sigmoid:k=20,unit=epoch", "inverse_sigmoid:k=20,unit=epoch",
     {"k": 20, "unit": "epoch"}),
])
def test_parse_setting(text, label, keys):
    s = parse_setting(text)
    assert s.label == label
    assert s.keys == {"schedule": text.split(":")[0], **keys}
    cfg = apply_setting(config.Config(), s, seed=7)  # valid values pass the config's checks
    assert cfg.teacher_forcing.schedule == s.keys["schedule"]
    assert cfg.train.seed == 7


def test_parse_settings_splits_and_defaults():
    got = parse_settings(["constant:1.0 linear", "inverse_sigmoid:k=20"])
    assert [s.label for s in got] == ["constant:1.0", "linear", "inverse_sigmoid:k=20"]
    assert len(parse_settings(DEFAULT_SETTINGS)) == 8


def test_setting_does_not_inherit_schedule_parameters():
    base = config.load(None, ["teacher_forcing.schedule=inverse_sigmoid",
                              "teacher_forcing.k=50", "teacher_forcing.feed=sample"])
    tf = apply_setting(base, parse_setting("exponential"), 1).teacher_forcing
    assert tf.schedule == "exponential" and tf.k is None and tf.feed == "sample"


@pytest.mark.parametrize("text, words", [
    ("constnt:1.0", "did you mean 'constant'"),
    ("cosine", "unknown schedule"),
    ("linear:0.5", "key=value"),
    ("linear:q=3", "unknown key"),
    ("inverse_sigmoid:k=", "no value"),
    ("constant:ratio=1,ratio=0", "twice"),
    ("constant:1.0 constant:1.0", "twice"),
    ("", "at least one"),
])
def test_bad_settings_syntax(text, words):
    with pytest.raises(UserError, match=words):
        parse_settings([text])


@pytest.mark.parametrize("text, words", [
    ("constant:1.5", "ratio must be in"),
    ("inverse_sigmoid:k=0.5", "k must be >= 1"),
    ("exponential:k=2", "k must be in"),
    ("linear:k=abc", "must be a number"),
    ("constant:0.5,feed=beam", "feed must be one of"),
])
def test_bad_settings_values(text, words):
    with pytest.raises(UserError, match=words):
        apply_setting(config.Config(), parse_setting(text), 1)


def test_length_buckets_cover_every_length():
    lengths = [3, 3, 4, 5, 7, 9, 9, 12, 15, 15]
    buckets = length_buckets(lengths, 4)
    assert buckets[0][0] == 3 and buckets[-1][1] == 15
    assert all(a[1] + 1 == b[0] for a, b in zip(buckets, buckets[1:]))  # contiguous
    assert length_buckets([5] * 10, 4) == [(5, 5)]


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_toy_recipe_has_its_data(path):
    """A recipe config without data.path must be one the script can generate data for."""
    if config.load(path).data.path is None:
        assert path.stem in toy.TASKS


def test_toy_data_is_the_recipes():
    d = toy.dataset("length_generalization", 1)
    longest_train = max(len(s.split()) for s in d["train"]["src"])
    assert min(len(s.split()) for s in d["test"]["src"]) > longest_train
    copy = toy.dataset("copy", 1)["test"]
    assert copy["src"] == copy["tgt"]


def _script(*args, cwd, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("args, words", [
    (["--settings", "constnt:1.0"], "unknown schedule"),
    (["--settings", "inverse_sigmoid:k=0.5"], "k must be >= 1"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--config", "missing.yaml"], "does not exist"),
    (["--settings", "constant:1.0", "--budget", "minutes"], "set it, e.g. --set train.max_minutes"),
    (["--extra-test", "x=a.de"], "NAME=SRC_FILE,REF_FILE"),
    (["--extra-test", "x=missing.de,missing.en"], "does not exist"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--injection-sentences", "-1"], "--injection-sentences must be >= 0"),
    (["--injection-sentences", "5"], "the reverse task probes every output against its exact"),
])
def test_bad_input_is_one_line(tmp_path, args, words):
    p = _script(*args, "--out", tmp_path / "out", cwd=tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], p.stderr


def test_help_through_the_cli(run_cli):
    p = run_cli("compare-tf", "--help")
    assert "--settings" in p.stdout and "inverse_sigmoid" in p.stdout and "--seeds" in p.stdout


def test_an_installed_package_runs_it_in_any_folder(tmp_path):
    """The package alone (no recipes/ or scripts/ beside it), run from another folder."""
    site, work = tmp_path / "site", tmp_path / "work"
    shutil.copytree(ROOT / "seq2seq", site / "seq2seq",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    run = lambda *a: subprocess.run([sys.executable, *a], capture_output=True, text=True,
                                    cwd=work, env=env, timeout=120)
    p = run("-c", "import seq2seq, seq2seq.compare.study; print(seq2seq.__file__)")
    assert p.returncode == 0 and p.stdout.startswith(str(site)), p.stderr
    p = run("-m", "seq2seq", "compare-tf", "--help")
    assert p.returncode == 0 and "--settings" in p.stdout, p.stderr
    # the default config is the package's own: read (a check after it stops the run)
    p = run("-m", "seq2seq", "compare-tf", "--settings", "constant:1.0", "--set",
            "data.test_split=null", "--set", "data.valid_split=null")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "neither data.test_split nor data.valid_split" in p.stderr


def test_the_default_config_is_the_reverse_recipes():
    """The package's default comparison config is a copy of the recipe's: they must not drift."""
    packaged = ROOT / "seq2seq" / "compare" / "reverse.yaml"
    assert packaged.read_text(encoding="utf-8") == \
        (ROOT / "recipes" / "reverse.yaml").read_text(encoding="utf-8")
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "reverse.yaml" in setup["options.package_data"]["seq2seq.compare"].split()


def _reverse_files(d, rng, n):
    src, tgt = [], []
    for _ in range(n):
        seq = [rng.choice("abcdefgh") for _ in range(rng.randint(2, 7))]
        src.append(" ".join(seq))
        tgt.append(" ".join(reversed(seq)))
    (d / f"{n}.src").write_text("\n".join(src) + "\n")
    (d / f"{n}.tgt").write_text("\n".join(tgt) + "\n")
    return [str(d / f"{n}.src"), str(d / f"{n}.tgt")]


TINY = """
data: {{path: text, data_files: {{train: {train}, validation: {valid}, test: {test}}}}}
tokenizer: {{vocab_size: 32, byte_fallback: false}}
model: {{embedding_dim: 16, hidden_size: 16, dropout: 0.0}}
train: {{max_steps: 6, eval_every: 3, batch_size: 32, lr: 0.01, threads: 1, device: cpu}}
decode: {{batch_size: 64}}
"""


def _tables(md):
    """The markdown tables of ``md``, each a list of its lines less the rule under the head."""
    tables, block = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            block += [line] if line.startswith("| ") else []
        elif block:
            tables.append(block)
            block = []
    return tables


def test_end_to_end_two_settings(tmp_path, monkeypatch, capsys):
    rng = random.Random(0)
    files = {k: _reverse_files(tmp_path, rng, n)
             for k, n in (("train", 300), ("valid", 40), ("test", 41))}
    (tmp_path / "tiny.yaml").write_text(TINY.format(**files))
    args = ["--config", "tiny.yaml", "--settings", "constant:1.0", "linear:min=0.5",
            "--out", "cmp", "--buckets", "3", "--beam-sizes", "1", "2",
            "--extra-test", f"again={files['valid'][0]},{files['valid'][1]}",
            "--set", "train.tensorboard=true"]
    p = _script(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "cmp"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["setting"] for r in rows] == ["constant:1.0", "linear:min=0.5"]
    for r in rows:
        assert 0.0 <= float(r["bleu"]) <= 100.0 and float(r["steps"]) == 6
        gap = float(r["valid_loss_free"]) - float(r["valid_loss_tf"])
        assert float(r["gap"]) == pytest.approx(gap, abs=1e-3)
        assert any(k.startswith("bleu_len_") for k in r)
    assert float(rows[0]["ratio_mean"]) == 1.0 and 0.5 < float(rows[1]["ratio_mean"]) < 1.0
    md = (out / "results.md").read_text()
    table, pooled, full = _tables(md)  # the headline, every scored set, every column
    assert len(table) == 3 and "| constant:1.0 |" in table[1] and "| linear:min=0.5 |" in table[2]
    assert len(full) == 3 and len(table[0].split("|")) - 2 <= 9  # about eight columns
    assert table[1] in p.stdout  # the table is printed at the end
    for name in ("scores", "bleu_by_length", "training_curves", "position_accuracy"):
        assert (out / f"{name}.png").stat().st_size > 1000
    positions = list(csv.DictReader(open(out / "position_accuracy.csv")))
    assert {r["setting"] for r in positions} == {"constant:1.0", "linear:min=0.5"}
    assert (out / "runs" / "linear-min0.5" / "seed1" / "metrics.jsonl").is_file()
    # significance against the first setting, and the budget each run got
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert float(runs[0]["bleu_diff"]) == 0.0 and float(runs[0]["p_value"]) == 1.0
    diff = float(rows[1]["bleu"]) - float(rows[0]["bleu"])
    assert float(runs[1]["bleu_diff"]) == pytest.approx(diff, abs=0.01)
    assert float(runs[1]["bleu_diff_lo"]) <= float(runs[1]["bleu_diff_hi"])
    assert 0.0 < float(runs[1]["p_value"]) <= 1.0
    assert {r["stopped_by"] for r in runs} == {"budget"} and 0 < float(runs[0]["epochs"]) < 1
    assert "ΔBLEU vs constant:1.0" in full[0] and " of 1 (uncorrected " in full[2]
    assert float(runs[1]["p_holm"]) == pytest.approx(float(runs[1]["p_value"]))  # a family of 1
    better, worse = int(rows[1]["significantly_better"]), int(rows[1]["significantly_worse"])
    pv = float(runs[1]["p_value"])
    assert (better, worse) == ((pv < 0.05 and diff > 0) * 1, (pv < 0.05 and diff < 0) * 1)
    # beam sizes and the extra test set: columns and a plot
    assert "BLEU beam 2" in full[0] and "BLEU again |" in full[0]
    assert "BLEU again beam 2" in full[0]
    assert all(0 <= float(r[k]) <= 100 for r in runs
               for k in ("bleu_beam_2", "bleu_again", "bleu_again_beam_2"))
    assert (out / "bleu_by_beam.png").stat().st_size > 1000
    # the hallucination rate per scored set, greedy (exact: the data is the reverse task's),
    # per run and over seeds; it is the detector's on the run's outputs
    srcs, refs = (open(f).read().splitlines() for f in files["test"])
    for r, d in zip(runs, ("constant-1.0", "linear-min0.5")):
        assert {k for k in r if k.startswith("hallucination")} >= {
            "hallucination_rate_test", "hallucination_rate_again", "hallucination_looping_test"}
        hyps = (out / "runs" / d / "seed1" / "test.hyp").read_text().splitlines()
        rate = hallucination_report(srcs, refs, hyps, [None] * len(hyps), "reverse")
        assert float(r["hallucination_rate_test"]) == pytest.approx(rate["hallucination_rate"])
    for row, r in zip(rows, runs):  # one seed: the mean is the run's
        assert float(row["hallucination_rate_again"]) == pytest.approx(
            float(r["hallucination_rate_again"]))
    events = {e.parent.relative_to(out / "runs").as_posix()
              for e in (out / "runs").rglob("events.out.tfevents.*")}
    assert events == {"constant-1.0/seed1", "linear-min0.5/seed1"}  # a TensorBoard run per arm
    # the pooled comparison: every scored set, greedy and beam, with its forest plot
    sets = ("test", "test beam 2", "again", "again beam 2")
    for name in ("test", "test-beam2", "again", "again-beam2"):
        assert (out / f"forest-{name}.png").stat().st_size > 1000
    comparisons = list(csv.DictReader(open(out / "comparisons.csv")))
    assert {(r["set"], r["metric"]) for r in comparisons} == {
        (s, m) for s in sets for m in ("bleu", "chrf", "exact_match")} | {
        (s, "hallucination") for s in ("test", "again")}  # greedy only
    run_dir = out / "runs" / "linear-min0.5" / "seed1"
    kept = json.loads((run_dir / "result.json").read_text())
    for name, rep in kept["hallucination"].items():  # the flags: the sentences the rate counts
        n = len((run_dir / f"{name}.hyp").read_text().splitlines())
        assert rep["hallucination_rate"] == pytest.approx(
            round(100.0 * len(rep["hallucination_flagged"]) / n, 2))
    for r in comparisons:
        assert float(r["lo"]) <= float(r["hi"]) and r["setting"] == "linear:min=0.5"
        assert r["verdict"] in ("better", "worse", "equivalent", "undetermined")
    # with one seed the pooled difference is the run's own difference
    hb_diff = float(rows[1]["hb_bleu_diff"])
    assert hb_diff == pytest.approx(float(runs[1]["bleu_diff"]), abs=0.01)
    assert rows[0]["hb_bleu_verdict"] == "reference" and len(pooled) == 1 + 4  # head, sets
    assert "minimum detectable effect" in table[0] and "verdict" in table[0]
    undetermined = [l for l in pooled if "undetermined" in l or "equivalent" in l]
    assert all(l.count("minimum detectable effect") == l.count("undetermined")
               + l.count("equivalent") for l in undetermined)
    # McNemar on exact match per run, from the runs' outputs
    hyps = [(out / "runs" / d / "seed1" / "test.hyp").read_text().splitlines()
            for d in ("constant-1.0", "linear-min0.5")]
    refs = open(files["test"][1]).read().splitlines()
    right = [[h.strip() == r.strip() for h, r in zip(hs, refs)] for hs in hyps]
    b = sum(x and not y for x, y in zip(*right))
    c = sum(y and not x for x, y in zip(*right))
    assert (int(runs[1]["mcnemar_b"]), int(runs[1]["mcnemar_c"])) == (b, c)
    assert 0.0 < float(runs[1]["mcnemar_p"]) <= 1.0 and float(runs[0]["mcnemar_p"]) == 1.0

    # the same command again (in-process, to save the start-up) trains nothing new
    best = out / "runs" / "constant-1.0" / "seed1" / "best.pt"
    before = best.stat().st_mtime_ns
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert study.main(args + ["--no-progress"]) == 0
    captured = capsys.readouterr()
    assert best.stat().st_mtime_ns == before
    assert "reusing" in captured.err and table[1] in captured.out

    # a result scored otherwise (here: before extra sets were scored at every beam size) is
    # scored again from its checkpoint, without training
    result = best.parent / "result.json"
    old = json.loads(result.read_text())
    result.write_text(json.dumps({k: v for k, v in old.items() if k != "extra_bleu_by_beam"}))
    assert study.main(args + ["--no-progress"]) == 0
    assert best.stat().st_mtime_ns == before
    new = json.loads(result.read_text())
    assert new["extra_bleu_by_beam"] == old["extra_bleu_by_beam"] and new["steps"] == old["steps"]
    # ... and so is one scored before the hallucination rate was
    result.write_text(json.dumps({k: v for k, v in old.items() if k != "hallucination"}))
    assert study.main(args + ["--no-progress"]) == 0
    assert best.stat().st_mtime_ns == before
    assert json.loads(result.read_text())["hallucination"] == old["hallucination"]
    assert not (out / "injection.csv").exists()  # translation: the probe only on request

    # error injection on translation, asked of finished runs: probed without training or
    # scoring again, against the reference suffix and labelled so; what the probe gives
    old = json.loads(result.read_text())
    assert study.main(args + ["--no-progress", "--injection-sentences", "20"]) == 0
    assert best.stat().st_mtime_ns == before
    new = json.loads(result.read_text())
    assert {k: v for k, v in new.items() if not k.startswith("injection")} == {
        k: v for k, v in old.items() if not k.startswith("injection")}
    assert new["injection_against"] == "reference suffix" and new["injection_sentences"] == 20
    probes = list(csv.DictReader(open(out / "injection.csv")))
    assert {(r["setting"], r["set"], r["against"]) for r in probes} == {
        (s, name, "reference suffix") for s in ("constant:1.0", "linear:min=0.5")
        for name in ("test", "again")}
    assert {(r["how"], r["k"], r["t"]) for r in probes} == {
        (h, str(k), str(t)) for h in ("gold", "random", "second") for k in (1, 2, 4)
        for t in (2, 5, 10)}
    assert all(0 < int(r["n"]) <= 20 for r in probes if r["t"] == "2")
    from seq2seq.compare.injection import inject
    from seq2seq.data.batching import encode_pairs
    from seq2seq.load import load_model
    model, tok, _ = load_model(best, device="cpu")
    pairs = encode_pairs(tok, [open(f).read().splitlines()[:20] for f in files["test"]])
    want = inject(model, pairs, 5, 2, "second", 64, "cpu")
    got = next(r for r in probes if (r["setting"], r["set"], r["how"], r["k"], r["t"]) == (
        "constant:1.0", "test", "second", "2", "5"))
    assert float(got["acc"]) == pytest.approx(want["acc"]) and int(got["n"]) == want["n"]
    md = (out / "results.md").read_text()
    assert "## Error injection" in md and "(against the reference suffix)" in md
    assert "| constant:1.0 |" in md.split("## Error injection")[1]
    assert (out / "injection.png").stat().st_size > 1000
    mtime = result.stat().st_mtime_ns  # probed once: the same command reuses it as it is
    assert study.main(args + ["--no-progress", "--injection-sentences", "20"]) == 0
    assert result.stat().st_mtime_ns == mtime


def test_holm_adjusts_a_family_of_p_values_step_down():
    from seq2seq.compare.stats import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # order kept
    assert holm([0.2]) == [0.2] and holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
    nan = float("nan")  # an arm with nothing to test: stays NaN, and not one of the m
    adjusted = holm([0.01, nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)
    assert adjusted[1] != adjusted[1]


def test_paired_bootstrap_and_confidence_intervals():
    from seq2seq.compare.stats import mean_std_ci, paired_bootstrap

    rng = random.Random(0)
    refs = [" ".join(rng.choice("abcdef") for _ in range(8)) for _ in range(300)]
    worse = [r if rng.random() < 0.5 else " ".join(reversed(r.split())) for r in refs]
    better = [r if rng.random() < 0.9 else " ".join(reversed(r.split())) for r in refs]
    tie = paired_bootstrap(worse, worse, refs)
    assert tie == {"bleu_diff": 0.0, "bleu_diff_lo": 0.0, "bleu_diff_hi": 0.0, "p_value": 1.0}
    up = paired_bootstrap(worse, better, refs)
    assert up["bleu_diff"] > 10 and up["p_value"] < 0.01
    assert 0 < up["bleu_diff_lo"] <= up["bleu_diff"] <= up["bleu_diff_hi"]
    down = paired_bootstrap(better, worse, refs)
    assert down["bleu_diff"] == pytest.approx(-up["bleu_diff"])
    # the p-value and the interval come from the same resamples: they never disagree
    # an arm about p = 0.05 away from `worse` (20 sentences fixed, 10 broken), so that
    # both verdicts occur over the seeds
    near = list(worse)
    wrong = [i for i, (w, r) in enumerate(zip(worse, refs)) if w != r]
    right = [i for i, (w, r) in enumerate(zip(worse, refs)) if w == r]
    for i in wrong[:20]:
        near[i] = refs[i]
    for i in right[:10]:
        near[i] = " ".join(reversed(refs[i].split()))
    verdicts = set()
    for seed in range(12):
        for a, b in ((worse, near), (near, worse)):
            r = paired_bootstrap(a, b, refs, n_samples=200, seed=seed)
            assert (r["p_value"] < 0.05) == (r["bleu_diff_lo"] > 0 or r["bleu_diff_hi"] < 0), r
            verdicts.add(r["p_value"] < 0.05)
    assert verdicts == {True, False}
    assert paired_bootstrap(worse, near, refs, seed=0) == paired_bootstrap(worse, near, refs, seed=0)
    assert paired_bootstrap(worse, near, refs, seed=0) != paired_bootstrap(worse, near, refs, seed=1)
    m, sd, ci = mean_std_ci([1.0, 2.0, 3.0])
    assert (m, sd) == (2.0, 1.0) and ci == pytest.approx(4.303 / 3 ** 0.5)
    assert mean_std_ci([5.0]) == (5.0, 0.0, 0.0)


def test_parallel_jobs_give_the_results_of_one_at_a_time(tmp_path):
    rng = random.Random(1)
    files = {k: _reverse_files(tmp_path, rng, n)
             for k, n in (("train", 200), ("valid", 30), ("test", 31))}
    (tmp_path / "tiny.yaml").write_text(TINY.format(**files))
    args = ["--config", "tiny.yaml", "--settings", "constant:1.0", "constant:0.5",
            "--beam-sizes", "1", "--no-progress"]
    for jobs in ("1", "2"):
        p = _script(*args, "--jobs", jobs, "--out", f"j{jobs}", cwd=tmp_path, timeout=600)
        assert p.returncode == 0, p.stderr
    timing = ("train_seconds", "train_seconds_std", "train_seconds_ci95")
    read = lambda d: [{k: v for k, v in r.items() if k not in timing}
                      for r in csv.DictReader(open(tmp_path / d / "results.csv"))]
    assert read("j1") == read("j2")


def test_budgets_set_what_every_run_gets():
    base = config.load(None, ["train.patience=3", "train.max_minutes=5", "train.max_steps=100"])
    steps = study.with_budget(base, "steps").train
    assert (steps.patience, steps.max_minutes, steps.max_steps) == (0, None, 100)
    minutes = study.with_budget(base, "minutes").train
    assert (minutes.patience, minutes.max_minutes, minutes.max_steps) == (0, 5, 100)  # a cap
    converge = study.with_budget(config.load(None, ["train.max_steps=100"]), "converge").train
    assert converge.patience == 5 and converge.max_steps == 100


def test_schedule_summary_of_a_long_run_is_sampled():
    from seq2seq.compare.settings import schedule_summary

    cfg = apply_setting(config.Config(), parse_setting("linear"), 1)
    s = schedule_summary(cfg.teacher_forcing, 1000, 3 * 10 ** 8, 10 ** 6)
    assert len(s["ratios"]) == len(s["ratio_steps"]) == 2000
    assert s["ratio_start"] == 1.0 and s["ratio_end"] == pytest.approx(0.0, abs=1e-6)
    assert s["ratio_mean"] == pytest.approx(0.5, abs=0.01)


def test_every_score_of_a_run_decodes_with_its_learned_output_limit(tmp_path, monkeypatch):
    """Beam sizes and extra test sets decode with the checkpoint's config, which holds the
    output limit learned from the training data, as the greedy score does."""
    from seq2seq.compare import runs

    rng = random.Random(2)
    files = {k: _reverse_files(tmp_path, rng, n)
             for k, n in (("train", 120), ("valid", 20), ("test", 21))}
    (tmp_path / "tiny.yaml").write_text(TINY.format(**files))
    seen, real = [], runs.evaluate_lines
    monkeypatch.setattr(runs, "evaluate_lines", lambda model, tok, cfg, *a, **k: (
        seen.append(cfg.decode), real(model, tok, cfg, *a, **k))[1])
    monkeypatch.chdir(tmp_path)
    args = ["--config", "tiny.yaml", "--settings", "constant:1.0", "--beam-sizes", "1", "2",
            "--extra-test", f"again={files['valid'][0]},{files['valid'][1]}", "--out", "cmp",
            "--no-progress"]
    assert study.main(args) == 0
    assert seen and all(d.max_len_a is not None and d.max_len_b is not None for d in seen)


@pytest.mark.parametrize("decode", [["decode.beam=2", "decode.coverage_penalty=0.5"],
                                    ["decode.sample=true"]], ids=["coverage", "sample"])
def test_greedy_scores_are_the_argmax_whatever_the_config_decodes(tmp_path, monkeypatch, decode):
    """A config whose decode section sets a coverage penalty (which needs beam > 1) or sampling
    runs through the comparison's decoding: its greedy outputs are the argmax's (not samples),
    and each beam size decodes."""
    from seq2seq.config import DecodeConfig
    from seq2seq.decoding.search import translate
    from seq2seq.load import load_model

    rng = random.Random(3)
    files = {k: _reverse_files(tmp_path, rng, n)
             for k, n in (("train", 120), ("valid", 20), ("test", 21))}
    (tmp_path / "tiny.yaml").write_text(TINY.format(**files))
    monkeypatch.chdir(tmp_path)
    sets = [x for s in decode for x in ("--set", s)]
    assert study.main(["--config", "tiny.yaml", "--settings", "constant:1.0", "--beam-sizes",
                       "1", "2", "--out", "cmp", "--no-progress", *sets]) == 0
    [hyp] = (tmp_path / "cmp").rglob("test.hyp")  # greedy; test.beam2.hyp: beam 2
    assert sorted(p.name for p in hyp.parent.glob("*.hyp")) == ["test.beam2.hyp", "test.hyp"]
    model, tok, cfg = load_model(hyp.parent / "best.pt")
    assert cfg.decode.sample or cfg.decode.coverage_penalty  # the run's config kept them
    srcs = (tmp_path / "21.src").read_text().splitlines()
    argmax = DecodeConfig(max_len_a=cfg.decode.max_len_a, max_len_b=cfg.decode.max_len_b)
    assert hyp.read_text().splitlines() == translate(model, tok, srcs, argmax).hyps
    result = json.loads((hyp.parent / "result.json").read_text())
    assert set(result["bleu_by_beam"]) == {"1", "2"}


def test_table_over_seeds_shows_the_difference_interval_and_holm_counts():
    """Three seeds, three settings: the ΔBLEU interval over seeds, and significance counted
    before and after Holm's correction within each seed."""
    from types import SimpleNamespace

    from seq2seq.compare.report import METRICS, aggregate, markdown_table

    def result(bleu, diff, p, p_holm):
        r = {k: 50.0 for k, _, _ in METRICS}
        r.update(bleu=bleu, bleu_by_length={"1-5": bleu}, steps=10, epochs=1.0,
                 train_seconds=1.0, stopped_by="budget", bleu_diff=diff, p_value=p,
                 p_holm=p_holm)
        return r

    settings = [SimpleNamespace(label=x) for x in ("ref", "up", "noise")]
    sched = {s.label: {"schedule": "", "ratio_mean": 1.0} for s in settings}
    results = {
        "ref": [result(40.0, 0.0, 1.0, 1.0) for _ in range(3)],
        "up": [result(41.0 + d, 1.0 + d, 0.01, 0.02) for d in (0.0, 0.1, -0.1)],
        "noise": [result(40.0 + d, d, p, min(1.0, 2 * p)) for d, p in
                  ((0.5, 0.04), (-0.5, 0.3), (0.2, 0.2))],
    }
    rows = aggregate(settings, sched, results, ["1-5"])
    up, noise = rows[1], rows[2]
    assert (up["significantly_better"], up["significantly_better_holm"]) == (3, 3)
    assert (noise["significantly_better"], noise["significantly_better_holm"]) == (1, 0)
    table = markdown_table(rows, ["1-5"], seeds=3).splitlines()
    assert "ΔBLEU 95% CI" in table[0] and "p_Holm < 0.05 (uncorrected)" in table[0]
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]
    head = cells(table[0])
    ci = head.index("ΔBLEU 95% CI")
    lo, hi = (float(x) for x in cells(table[4])[ci].split(" - "))
    assert lo < 0 < hi  # the noisy arm's interval holds 0 ...
    lo, hi = (float(x) for x in cells(table[3])[ci].split(" - "))
    assert 0 < lo < 1.0 < hi  # ... the consistent one's does not
    sig = head.index("p_Holm < 0.05 (uncorrected)")  # the corrected count leads
    assert cells(table[4])[sig] == "0 better, 0 worse of 3 (uncorrected 1, 0)"


def test_killing_the_study_stops_its_workers(tmp_path):
    """SIGKILL of a --jobs study: its worker processes get SIGTERM (they would otherwise train
    on, as orphans, into the study's folders) and exit, and no run is recorded as finished
    (the next study resumes them from their checkpoints)."""
    import signal
    import time

    rng = random.Random(2)
    files = {k: _reverse_files(tmp_path, rng, n)
             for k, n in (("train", 300), ("valid", 30), ("test", 31))}
    (tmp_path / "tiny.yaml").write_text(TINY.format(**files).replace(
        "max_steps: 6, eval_every: 3", "max_steps: 100000, epochs: 100000, eval_every: 50"))
    p = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "compare_teacher_forcing.py"),
                          "--config", "tiny.yaml", "--settings", "constant:1.0", "constant:0.5",
                          "--jobs", "2", "--beam-sizes", "1", "--no-progress", "--out", "cmp"],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runs = [tmp_path / "cmp" / "runs" / s / "seed1" for s in ("constant-1.0", "constant-0.5")]
        deadline = time.time() + 120
        while time.time() < deadline and not all((r / "last.pt").is_file() for r in runs):
            time.sleep(0.5)  # both workers are training (each saved a checkpoint)
        assert all((r / "last.pt").is_file() for r in runs)
        workers = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                 text=True).stdout.split()
        assert len(workers) >= 2
        p.kill()
        p.wait()
        deadline = time.time() + 60
        while time.time() < deadline and any(os.path.exists(f"/proc/{w}") and
                                             "zombie" not in open(f"/proc/{w}/status").read()
                                             for w in workers):
            time.sleep(0.2)
        alive = [w for w in workers if os.path.exists(f"/proc/{w}")
                 and "zombie" not in open(f"/proc/{w}/status").read()]
        assert not alive, "workers trained on after the study was killed"
        assert not any((r / "result.json").exists() for r in runs)  # interrupted, not finished
    finally:
        if p.poll() is None:
            p.kill()
