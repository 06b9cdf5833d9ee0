"""The Python API (seq2seq.Translator, seq2seq.train): the same outputs as the command line,
the same error messages raised (not printed), silent by default."""

import json

import pytest

import seq2seq
from conftest import seq2seq as run_seq2seq
from seq2seq import Translator, UserError
from test_cli import LINES, toy  # noqa: F401 (toy: the CLI's trained run, trained once)

INPUTS = [l for l in LINES if l.strip()]


@pytest.fixture(scope="module")
def tr(toy):  # noqa: F811
    return Translator.load(toy.run, device="cpu")


def cli_lines(toy, *options, inputs=INPUTS):  # noqa: F811
    p = run_seq2seq("translate", "--checkpoint", toy.run, "--device", "cpu", *options,
                    cwd=toy.dir, input="".join(l + "\n" for l in inputs))
    return p.stdout.splitlines()


def test_public_names_are_exported():
    assert {"Translator", "train", "load_config", "Config", "UserError"} <= set(seq2seq.__all__)
    for name in seq2seq.__all__:
        assert getattr(seq2seq, name) is not None
        if name != "__version__":
            assert getattr(seq2seq, name).__doc__, name


@pytest.mark.parametrize("options,kwargs", [
    ((), {}),
    (("--beam", "3"), {"beam": 3}),
    (("--sample", "--seed", "7", "--temperature", "1.5"),
     {"sample": True, "seed": 7, "temperature": 1.5}),
    (("--beam", "2", "--n-best", "2"), {"beam": 2, "n_best": 2}),
])
def test_api_equals_cli(toy, tr, options, kwargs, capfd):  # noqa: F811
    expected = cli_lines(toy, *options)
    capfd.readouterr()
    got = tr.translate(INPUTS, **kwargs)
    if kwargs.get("n_best", 1) > 1:
        got = [h for n_best in got for h in n_best]
    assert got == expected
    assert capfd.readouterr() == ("", "")  # nothing printed by default


def test_prefixes_and_a_single_string(toy, tr, tmp_path):  # noqa: F811
    prefixes = ["Katze", ""] + [""] * (len(INPUTS) - 2)
    pf = tmp_path / "prefix.txt"
    pf.write_text("".join(p + "\n" for p in prefixes), encoding="utf-8")
    assert tr.translate(INPUTS, prefix=prefixes) == cli_lines(toy, "--prefix-file", pf)
    out = tr.translate("cat dog")
    assert isinstance(out, str) and out == tr.translate(["cat dog"])[0]


def test_scores_and_attention_are_typed(tr):
    t = tr.translate("tree house", return_scores=True, return_attention=True)
    assert t.text == tr.translate("tree house")
    assert t.score < 0
    src, out, weights = t.attention
    assert weights.shape == (len(out), len(src))
    assert weights.sum(-1).tolist() == pytest.approx([1.0] * len(out), abs=1e-4)
    scored = tr.score(["tree house"], [t.text])[0]
    assert scored.log_prob == pytest.approx(t.score, abs=1e-3)  # the score of its own output


def test_score_and_evaluate_equal_cli(toy, tr, tmp_path):  # noqa: F811
    src, ref = tmp_path / "s.txt", tmp_path / "r.txt"
    src.write_text("cat\ndog house\n", encoding="utf-8")
    ref.write_text("Katze\nHund Haus\n", encoding="utf-8")
    p = run_seq2seq("score", "--checkpoint", toy.run, "--src", src, "--tgt", ref, "--json",
                    cwd=toy.dir)
    cli = [s["log_prob"] for s in json.loads(p.stdout)["sentences"]]
    api = [s.log_prob for s in tr.score(["cat", "dog house"], ["Katze", "Hund Haus"])]
    assert api == pytest.approx(cli, abs=1e-6)
    ev = tr.evaluate(["cat", "dog"], ["Katze", "Hund"])
    assert ev["signature"].startswith("nrefs:1|case:mixed") and "chrf" in ev
    assert ev["hyps"] == tr.translate(["cat", "dog"])
    same = tr.evaluate(INPUTS, tr.translate(INPUTS))  # its own outputs as references
    assert same["chrf"] == pytest.approx(100.0) and same["exact_match"] == pytest.approx(100.0)


def test_evaluate_reports_the_hallucination_keys_of_the_cli(toy, tr):  # noqa: F811
    """The keys starting with "hallucination" are ``seq2seq evaluate --json``'s on the same
    lines (here the proxy, on translation); pairs of an aligned toy task get the exact rate."""
    rows = [json.loads(l) for l in (toy.dir / "valid.jsonl").read_text().splitlines()]
    cli = json.loads(run_seq2seq("evaluate", "--checkpoint", toy.run, "--split", "test",
                                 "--device", "cpu", "--json", cwd=toy.dir).stdout)
    api = tr.evaluate([r["en"] for r in rows], [r["de"] for r in rows])
    keys = {k for k in cli if k.startswith("hallucination")}
    assert "hallucination_proxy_rate" in keys and {k for k in api if k.startswith("halluc")} == keys
    assert {k: api[k] for k in keys} == {k: cli[k] for k in keys}
    copy = tr.evaluate(["cat", "dog house"], ["cat", "dog house"])  # the copy task's pairs
    assert copy["hallucination_method"] == "exact: toy task copy"
    assert 0 <= copy["hallucination_rate"] <= 100 and "hallucination_proxy_rate" not in copy


def test_bad_arguments_raise_the_cli_message(toy, tr):  # noqa: F811
    p = run_seq2seq("translate", "--checkpoint", toy.run, "--sample", "--beam", "3",
                    cwd=toy.dir, input="cat\n", check=False)
    assert p.returncode == 2
    cli_message = p.stderr.strip().split("error: ", 1)[1]
    with pytest.raises(UserError) as e:
        tr.translate("cat", sample=True, beam=3)
    assert str(e.value) == cli_message
    with pytest.raises(UserError, match="unknown decoding option"):
        tr.decode_config(beams=3)
    with pytest.raises(UserError, match="does not exist"):
        Translator.load(toy.dir / "missing.pt")
    with pytest.raises(UserError, match="one prefix"):
        tr.translate(["a", "b"], prefix=["x"])


def test_an_ensemble_of_two_checkpoints(toy, tr):  # noqa: F811
    both = Translator.load([toy.run, toy.run], device="cpu")
    assert both.translate(INPUTS) == tr.translate(INPUTS)  # a model with itself: itself


def test_train_from_python_equals_the_cli(toy, tmp_path, capfd):  # noqa: F811
    run_seq2seq("train", "--config", toy.cfg, "--out", tmp_path / "cli", "--no-progress",
                "--set", "train.max_steps=10", "--set", "train.eval_every=10", cwd=toy.dir)
    capfd.readouterr()
    summary = seq2seq.train(toy.cfg, tmp_path / "api",
                            overrides=["train.max_steps=10", "train.eval_every=10"],
                            progress=False)
    assert capfd.readouterr() == ("", "")  # progress=False: silent
    assert summary["steps"] == 10 and summary["checkpoint"].endswith("best.pt")

    def metrics(run):
        recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        drop = ("seconds", "tokens_per_s", "time", "wall", "rss", "elapsed", "sentences_per_s")
        return [{k: v for k, v in r.items() if not any(d in k for d in drop)} for r in recs]

    assert metrics(tmp_path / "api") == metrics(tmp_path / "cli")
    with pytest.raises(seq2seq.ConfigError, match="nearest|did you mean|unknown"):
        seq2seq.train(toy.cfg, tmp_path / "bad", overrides=["train.max_stepz=3"])
