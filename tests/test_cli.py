"""The CLI as a user runs it (subprocesses), on data the tests write: train, translate, evaluate,
resume, in the three data layouts (JSON lines, a `translation` column, plain-text pairs).

One tiny model is trained once for the module on a word-for-word toy task it learns in 40 steps
(so that translations differ from line to line and line order can be checked).
"""

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import seq2seq
from seq2seq import __version__

WORDS = {"cat": "Katze", "dog": "Hund", "house": "Haus", "tree": "Baum", "water": "Wasser",
         "bread": "Brot", "apple": "Apfel", "mouse": "Maus"}
PAIRS = [(en, de) for en, de in WORDS.items()] + [
    (f"{a} {b}", f"{WORDS[a]} {WORDS[b]}")
    for a, b in [("cat", "dog"), ("tree", "house"), ("water", "bread"), ("apple", "mouse")]]

MODEL = "model: {cell: gru, impl: manual, embedding_dim: 16, hidden_size: 32, dropout: 0.0}"
TRAIN = ("train: {max_steps: 40, batch_size: 16, lr: 0.03, lr_schedule: constant, "
         "eval_every: 20, valid_max_sentences: 20, seed: 1}")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def toy_rows(copies: int, key=None):
    rows = [(en, de) for _ in range(copies) for en, de in PAIRS]
    random.Random(0).shuffle(rows)
    if key == "translation":
        return [{"translation": {"en": en, "de": de}} for en, de in rows]
    return [{"en": en, "de": de} for en, de in rows]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    train = write_jsonl(d / "train.jsonl", toy_rows(8))
    valid = write_jsonl(d / "valid.jsonl", toy_rows(1))
    cfg = d / "toy.yaml"
    cfg.write_text(f"""# seq2seq train --config toy.yaml --out run
data:
  path: json
  data_files: {{train: {train}, validation: {valid}, test: {valid}}}
  src: en
  tgt: de
tokenizer: {{vocab_size: 400}}
{MODEL}
{TRAIN}
""", encoding="utf-8")
    p = seq2seq("train", "--config", cfg, "--out", d / "run", "--no-progress", cwd=d)
    return SimpleNamespace(dir=d, cfg=cfg, run=d / "run", log=p.stderr, stdout=p.stdout)


def test_help_of_every_command_and_version(tmp_path):
    p = seq2seq("--version", cwd=tmp_path)
    assert p.stdout.strip() == f"seq2seq {__version__}"
    top = seq2seq("--help", cwd=tmp_path).stdout
    for cmd, options in [("train", ["--config", "--set", "--out", "--resume", "--overwrite",
                                    "--encoding-errors"]),
                         ("translate", ["--checkpoint", "--input", "--output", "--batch-size",
                                        "--max-len-a", "--max-len-b", "--impl", "--device",
                                        "--encoding-errors"]),
                         ("evaluate", ["--checkpoint", "--split", "--hyp", "--ref", "--json"])]:
        assert cmd in top
        text = seq2seq(cmd, "--help", cwd=tmp_path).stdout
        for opt in options:
            assert opt in text, (cmd, opt)
    for cmd in ("average", "compare-tf"):
        if cmd in top:
            seq2seq(cmd, "--help", cwd=tmp_path)


def test_train_writes_a_run_folder(toy):
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.jsonl", "curves.png"):
        assert (toy.run / name).is_file(), name
    records = [json.loads(l) for l in (toy.run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [20, 40]
    assert {"train_loss", "valid_loss", "valid_ppl", "valid_bleu", "valid_chrf"} <= set(records[0])
    assert records[-1]["valid_loss"] < records[0]["valid_loss"]
    assert "best validation BLEU" in toy.stdout
    assert "padding" in toy.log and "dropped" in toy.log  # batching and length-filter reports
    assert not list(toy.run.glob(".*.tmp"))


LINES = ["cat", "", "tree house", "dog", "   ", "mouse", "water bread", "apple"]


@pytest.fixture(scope="module")
def translated(toy):
    """LINES translated from a file into a file, with the impl of the config (manual)."""
    (toy.dir / "in.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    seq2seq("translate", "--checkpoint", toy.run, "--input", "in.txt", "--output", "out.txt",
            cwd=toy.dir)
    return (toy.dir / "out.txt").read_text(encoding="utf-8")


def test_translate_keeps_line_count_order_and_empty_lines(toy, translated):
    out = translated.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(LINES)
    out = out[:-1]
    assert out[1] == "" and out[4] == ""  # empty (or blank) in, empty out
    assert len({o for o in out if o}) >= 4  # the model learned something: order matters
    correct = sum(o == dict(PAIRS).get(l) for l, o in zip(LINES, out))
    assert correct >= 4, out
    rev = "".join(l + "\n" for l in reversed(LINES))
    rev = seq2seq("translate", "--checkpoint", toy.run, "--batch-size", "3", input=rev,
                  cwd=toy.dir).stdout.split("\n")[:-1]
    assert rev[::-1] == out  # each line's translation stays with its line, whatever the batches


def test_bf16_translation_keeps_lines_and_mostly_agrees(toy, translated):
    text = (toy.dir / "in.txt").read_text(encoding="utf-8")
    out = seq2seq("translate", "--checkpoint", toy.run, "--bf16", input=text,
                  cwd=toy.dir).stdout.split("\n")
    fp32 = translated.split("\n")
    assert len(out) == len(fp32) and out[1] == out[4] == ""
    assert sum(a == b for a, b in zip(out, fp32)) >= len(fp32) - 2  # rounding, not a new model


def test_stdin_to_stdout_equals_files(toy, translated):
    text = (toy.dir / "in.txt").read_text(encoding="utf-8")
    p = seq2seq("translate", "--checkpoint", toy.run / "best.pt", input=text, cwd=toy.dir)
    assert p.stdout == translated


def test_manual_checkpoint_translates_identically_with_fused(toy, translated):
    assert "impl: manual" in (toy.run / "config.yaml").read_text()
    fused = seq2seq("translate", "--checkpoint", toy.run, "--impl", "fused", "--input",
                    "in.txt", cwd=toy.dir).stdout
    assert fused == translated


def test_evaluate_references_against_themselves(toy):
    refs = toy.dir / "refs.txt"
    refs.write_text("".join(de + "\n" for _, de in PAIRS) + "ein längerer Satz mit Wörtern\n",
                    encoding="utf-8")
    p = seq2seq("evaluate", "--hyp", refs, "--ref", refs, "--json", cwd=toy.dir)
    s = json.loads(p.stdout)
    assert s["bleu"] == 100.0 and s["chrf"] == 100.0 and s["exact_match"] == 100.0
    assert "nrefs:1" in s["signature"] and "version:" in s["chrf_signature"]
    text = seq2seq("evaluate", "--hyp", refs, "--ref", refs, cwd=toy.dir).stdout
    assert "BLEU 100.00" in text and "signature" in text


def test_evaluate_checkpoint_decodes_the_test_split(toy):
    p = seq2seq("evaluate", "--checkpoint", toy.run, "--split", "test", "--json", "--output",
                "hyps.txt", cwd=toy.dir)
    s = json.loads(p.stdout)
    assert s["n"] == len(PAIRS)
    assert s["exact_match"] >= 50.0  # the toy task is learned
    assert len((toy.dir / "hyps.txt").read_text(encoding="utf-8").splitlines()) == len(PAIRS)


def test_translation_column_layout(tmp_path):
    """The WMT/OPUS layout on the hub: {"translation": {"en": ..., "de": ...}}."""
    rows = toy_rows(2, key="translation")
    write_jsonl(tmp_path / "trv.jsonl", rows[:4])
    rows.append({"translation": {"en": "cat " * 150, "de": "Katze " * 150}})  # over max_len
    write_jsonl(tmp_path / "tr.jsonl", rows)
    (tmp_path / "c.yaml").write_text(f"""
data: {{path: json, data_files: {{train: tr.jsonl, validation: trv.jsonl}}, src: en, tgt: de,
       test_split: null, max_len: 100}}
{MODEL}
train: {{max_steps: 3, batch_size: 8}}
""")
    p = seq2seq("train", "--config", "c.yaml", "--out", "run", "--no-progress", cwd=tmp_path)
    n = 2 * len(PAIRS)
    assert f"{n} training pairs (0 empty and 1 longer than 100 pieces dropped)" in p.stderr
    assert f"warning: 1 of {n + 1} training pairs" in p.stderr  # an explicit max_len: a warning
    assert (tmp_path / "run" / "last.pt").is_file()


def test_plain_text_pairs_and_resume(tmp_path):
    en, de = zip(*[p for _ in range(2) for p in PAIRS])
    (tmp_path / "train.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("\n".join(de) + "\n", encoding="utf-8")
    (tmp_path / "valid.en").write_text("\n".join(en[:4]) + "\n", encoding="utf-8")
    (tmp_path / "valid.de").write_text("\n".join(de[:4]) + "\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text(f"""
data:
  path: text
  data_files: {{train: [train.en, train.de], validation: [valid.en, valid.de]}}
  test_split: null
{MODEL}
train: {{max_steps: 3, batch_size: 8}}
""")
    p = seq2seq("train", "--config", "c.yaml", "--out", "run", "--no-progress", cwd=tmp_path)
    assert f"{2 * len(PAIRS)} training pairs" in p.stderr
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert first["train_state"]["step"] == 3
    p = seq2seq("train", "--config", "c.yaml", "--set", "train.max_steps=5", "--out", "run",
                "--resume", "--no-progress", cwd=tmp_path)
    assert "resumed from" in p.stderr and "at step 3" in p.stderr
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert last["train_state"]["step"] == 5
    steps = [json.loads(l)["step"] for l in (tmp_path / "run" / "metrics.jsonl").read_text()
             .splitlines()]
    assert steps == sorted(steps) and steps[-1] == 5 and 3 in steps


def test_a_run_folder_that_holds_its_data_can_move(tmp_path):
    """Checkpoints store the data files that lie in the run folder relative to it (others
    absolute), and read them from the checkpoint's folder: the folder, renamed and moved
    elsewhere (another machine's layout), still evaluates its test split, and so does an
    average of its checkpoints written outside it."""
    data = tmp_path / "proj" / "run" / "data"
    data.mkdir(parents=True)
    write_jsonl(data / "train.jsonl", toy_rows(2))
    write_jsonl(data / "test.jsonl", toy_rows(1))
    write_jsonl(tmp_path / "proj" / "valid.jsonl", toy_rows(1))  # outside the run folder
    (tmp_path / "proj" / "c.yaml").write_text(f"""
data: {{path: json, data_files: {{train: run/data/train.jsonl, validation: valid.jsonl,
       test: run/data/test.jsonl}}, src: en, tgt: de}}
{MODEL}
train: {{max_steps: 3, batch_size: 8}}
""")
    seq2seq("train", "--config", "c.yaml", "--out", "run", "--no-progress",
            cwd=tmp_path / "proj")
    files = torch.load(tmp_path / "proj" / "run" / "best.pt")["config"]["data"]["data_files"]
    assert files == {"train": "data/train.jsonl", "test": "data/test.jsonl",
                     "validation": str((tmp_path / "proj" / "valid.jsonl").resolve())}
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "proj" / "run").rename(tmp_path / "elsewhere" / "moved")
    moved = tmp_path / "elsewhere" / "moved"
    p = seq2seq("evaluate", "--checkpoint", moved, "--json", cwd=tmp_path)
    assert json.loads(p.stdout)["n"] == len(PAIRS)
    # an average written outside the run folder names the files from where it lies
    seq2seq("average", "--checkpoints", moved / "best.pt", moved / "last.pt", "--out",
            tmp_path / "avg.pt", cwd=tmp_path)
    p = seq2seq("evaluate", "--checkpoint", "avg.pt", "--json", cwd=tmp_path)
    assert json.loads(p.stdout)["n"] == len(PAIRS)
