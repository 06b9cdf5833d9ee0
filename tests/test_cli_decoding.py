"""Decoding beyond greedy and beam on the command line: --scores, ensembles, sampling,
--prefix-file, repetition control, and `seq2seq score`, on test_cli's trained toy model.

Most commands run in-process (``cli.main``, the same code path as the ``seq2seq`` command
without a Python start-up each); the contract of exit codes and one-line errors is checked
in subprocesses.
"""

import json
import os

import pytest
import torch

from seq2seq.training import checkpoint
from seq2seq.cli.main import main
from conftest import seq2seq
from test_cli import LINES, PAIRS, toy  # noqa: F401 (toy: the trained model)


def run(capsys, *args):
    """``seq2seq ARGS`` in-process, in the toy model's folder; returns (exit status, stdout
    lines, stderr)."""
    capsys.readouterr()
    here = os.getcwd()
    os.chdir(args[args.index("--checkpoint") + 1].parent)
    try:
        rc = main([str(a) for a in args])
    finally:
        os.chdir(here)
    out = capsys.readouterr()
    return rc, out.out.split("\n")[:-1], out.err


@pytest.fixture(scope="module")
def files(toy):
    (toy.dir / "in.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    src = [en for en, _ in PAIRS]
    (toy.dir / "src.txt").write_text("\n".join(src) + "\n", encoding="utf-8")
    (toy.dir / "tgt.txt").write_text("\n".join(de for _, de in PAIRS) + "\n", encoding="utf-8")
    return toy.dir


def test_help_shows_the_options(toy):
    text = seq2seq("translate", "--help", cwd=toy.dir).stdout
    for opt in ("--scores", "--prefix-file", "--sample", "--temperature", "--top-k", "--top-p",
                "--seed", "--no-repeat-ngram", "--coverage-penalty", "ensemble"):
        assert opt in text, opt
    text = seq2seq("score", "--help", cwd=toy.dir).stdout
    for opt in ("--src", "--tgt", "--json", "--free-running", "examples:"):
        assert opt in text, opt


def test_scores_are_what_score_says(toy, files, capsys):
    rc, plain, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt")
    rc, tsv, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt",
                     "--scores")
    assert rc == 0 and len(tsv) == len(LINES)
    cols = [l.split("\t") for l in tsv]
    assert all(len(c) == 2 for c in cols)
    assert [c[0] for c in cols] == plain  # the same outputs, a column added
    assert cols[1] == ["", ""] and cols[4] == ["", ""]  # empty lines: not decoded, no score
    done = [(l, c) for l, c in zip(LINES, cols) if l.strip()]
    (files / "s.src").write_text("".join(l + "\n" for l, _ in done), encoding="utf-8")
    (files / "s.tgt").write_text("".join(c[0] + "\n" for _, c in done), encoding="utf-8")
    rc, scored, err = run(capsys, "score", "--checkpoint", toy.run, "--src", "s.src", "--tgt",
                          "s.tgt", "--impl", "fused")
    assert rc == 0 and "perplexity" in err
    assert [float(s.split("\t")[0]) for s in scored] == pytest.approx(
        [float(c[1]) for _, c in done], abs=2e-3)
    rc, beam, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt",
                      "--beam", "3", "--n-best", "2", "--scores")
    assert len(beam) == 2 * len(LINES)
    pairs = [l.split("\t") for l in beam[:2]]
    assert float(pairs[0][1]) >= float(pairs[1][1]) - 1e-6 or pairs[1][0] == ""


def test_an_ensemble_of_a_checkpoint_with_itself(toy, files, capsys):
    _, one, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt",
                    "--scores")
    _, two, _ = run(capsys, "translate", "--checkpoint", toy.run, toy.run / "best.pt",
                    "--input", "in.txt", "--scores", "--impl", "fused")
    assert [l.split("\t")[0] for l in one] == [l.split("\t")[0] for l in two]
    assert [float(l.split("\t")[1]) for l in one if l != "\t"] == pytest.approx(
        [float(l.split("\t")[1]) for l in two if l != "\t"], abs=1e-3)
    rc, out, err = run(capsys, "evaluate", "--checkpoint", toy.run, toy.run, "--split", "test",
                       "--json")
    assert rc == 0 and json.loads("\n".join(out))["n"] == len(PAIRS)


def test_an_ensemble_needs_one_vocabulary(toy):
    from seq2seq.config import TokenizerConfig, from_dict
    from seq2seq.model.seq2seq import Seq2Seq
    from seq2seq.data.tokenizer import Tokenizer, train_model

    ckpt = checkpoint.load(toy.run)
    tok = Tokenizer(train_model(["x y z w"] * 10, TokenizerConfig(vocab_size=300)))
    ckpt["tokenizer"] = tok.state()
    ckpt["model"] = Seq2Seq.from_config(from_dict(ckpt["config"]).model, tok.src_vocab_size,
                                        tok.tgt_vocab_size, 0).state_dict()
    checkpoint.save({k: v for k, v in ckpt.items() if k not in ("format", "version")},
                    toy.dir / "other.pt")
    p = seq2seq("translate", "--checkpoint", toy.run, "other.pt", input="cat\n", cwd=toy.dir,
                check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "other.pt has a different vocabulary" in p.stderr


def test_sampling_is_reproducible(toy, files, capsys):
    args = ["translate", "--checkpoint", toy.run, "--input", "in.txt", "--sample", "--n-best",
            "3", "--temperature", "2", "--seed", "4"]
    _, a, _ = run(capsys, *args)
    _, b, _ = run(capsys, *args, "--batch-size", "1")
    _, c, _ = run(capsys, *args[:-1], "5")
    assert len(a) == 3 * len(LINES) and a == b and a != c
    assert a[3:6] == ["", "", ""]  # the empty line's three samples
    _, greedy, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt")
    _, top1, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt",
                     "--sample", "--top-k", "1", "--temperature", "5")
    assert top1 == greedy


def test_prefixes_and_repetition(toy, files, capsys):
    prefixes = ["Katze Katze", "Hund", "", "Baum", "", "Maus Maus Maus", "", "Haus"]
    (files / "pre.txt").write_text("\n".join(prefixes) + "\n", encoding="utf-8")
    for extra in ([], ["--beam", "3"], ["--sample", "--seed", "2"], ["--no-repeat-ngram", "1"]):
        rc, out, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt",
                         "--prefix-file", "pre.txt", *extra)
        assert rc == 0 and len(out) == len(LINES)
        assert all(o.startswith(p) for o, p in zip(out, prefixes)), (extra, out)
    rc, out, _ = run(capsys, "translate", "--checkpoint", toy.run, "--input", "in.txt",
                     "--no-repeat-ngram", "1", "--max-len-b", "30")
    for o in out:  # with no piece repeated, no word is
        assert len(o.split()) == len(set(o.split())), o
    (files / "short.txt").write_text("a\n", encoding="utf-8")
    p = seq2seq("translate", "--checkpoint", toy.run, "--input", "in.txt", "--prefix-file",
                "short.txt", cwd=toy.dir, check=False)
    assert p.returncode == 2 and "one prefix (maybe empty) per line" in p.stderr


def test_score_command(toy, files, capsys):
    rc, out, err = run(capsys, "score", "--checkpoint", toy.run, "--src", "src.txt", "--tgt",
                       "tgt.txt", "--json")
    j = json.loads("\n".join(out))
    assert rc == 0 and j["mode"] == "teacher-forced" and len(j["sentences"]) == len(PAIRS)
    assert j["tokens"] == sum(s["tokens"] for s in j["sentences"])
    assert j["log_prob"] == pytest.approx(sum(s["log_prob"] for s in j["sentences"]))
    assert j["ppl"] == pytest.approx(torch.tensor(-j["log_prob"] / j["tokens"]).exp().item())
    _, free, _ = run(capsys, "score", "--checkpoint", toy.run, "--src", "src.txt", "--tgt",
                     "tgt.txt", "--json", "--free-running")
    f = json.loads("\n".join(free))
    assert f["mode"] == "free-running" and f["tokens"] == j["tokens"]
    assert f["log_prob"] <= j["log_prob"] + 1e-3  # fed its own guesses, never better here
    _, fused, _ = run(capsys, "score", "--checkpoint", toy.run, "--src", "src.txt", "--tgt",
                      "tgt.txt", "--json", "--impl", "fused")
    assert json.loads("\n".join(fused))["log_prob"] == pytest.approx(j["log_prob"], abs=1e-3)
    (files / "gap.txt").write_text("Katze\n\nHund\n", encoding="utf-8")
    (files / "three.txt").write_text("cat\ndog\ntree\n", encoding="utf-8")
    for src, tgt, words in [("src.txt", "gap.txt", "has 12 lines but --tgt gap.txt has 3"),
                            ("three.txt", "gap.txt", "--tgt line 2 is empty")]:
        p = seq2seq("score", "--checkpoint", toy.run, "--src", src, "--tgt", tgt, cwd=toy.dir,
                    check=False)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and words in p.stderr, p.stderr
