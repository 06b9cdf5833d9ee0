"""Bad input gets one clear line on stderr and exit status 2, never a traceback; interrupted
training loses nothing. The CLI runs as a user runs it (a subprocess) unless a fault has to be
injected (NaN loss, the fuzzing of translate), where ``seq2seq.cli.main.main`` runs in-process.
"""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import seq2seq
from seq2seq import config
from seq2seq.cli import main as cli
from seq2seq.training import checkpoint
from seq2seq.errors import UserError
from seq2seq.training.run_folder import RunFolder
from seq2seq.training.loop import train

PAIRS = [("a b c", "c b a"), ("d e", "e d"), ("f g h i", "i h g f"), ("j k", "k j"),
         ("a c e g", "g e c a"), ("b d", "d b")]
MODEL = "model: {cell: gru, impl: manual, embedding_dim: 16, hidden_size: 32}"


def fails(p, *needles, only=True):
    """Exit status 2, no traceback, and a one-line error that contains every needle."""
    err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2, (p.returncode, err)
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    if only:
        assert len(lines) == 1, err
    assert "error: " in lines[-1], err
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def write_jsonl(path, pairs):
    path.write_text("".join(json.dumps({"src": s, "tgt": t}) + "\n" for s, t in pairs),
                    encoding="utf-8")
    return path


def write_config(d, extra="", train_keys="max_steps: 4, batch_size: 4"):
    write_jsonl(d / "train.jsonl", PAIRS * 3)
    write_jsonl(d / "valid.jsonl", PAIRS[:3])
    p = d / "cfg.yaml"
    p.write_text(f"""data:
  path: json
  data_files: {{train: train.jsonl, validation: valid.jsonl, test: valid.jsonl}}
{MODEL}
train: {{{train_keys}}}
{extra}""", encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run (in-process, ~1 s): its folder holds last.pt and best.pt."""
    d = tmp_path_factory.mktemp("robust")
    write_config(d)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        train(config.load("cfg.yaml", ["train.max_steps=6", "train.eval_every=3"]), "run",
              progress=False)
    finally:
        os.chdir(cwd)
    return d / "run"


# -- config ---------------------------------------------------------------------------------

CONFIG_CASES = {
    "missing file": ("", ["--config", "nope.yaml"], ["nope.yaml", "does not exist"]),
    "invalid yaml": ("model:\n  cell: gru\n hidden_size: 3\n", [], ["line 3", "not valid YAML"]),
    "misspelled key": ("model: {hiden_size: 3}\n", [], ["model.hiden_size", "'hidden_size'"]),
    "misspelled section": ("modle: {cell: gru}\n", [], ["'modle'", "'model'"]),
    "negative size": ("model: {hidden_size: -3}\n", [], ["model.hidden_size", "> 0", "-3"]),
    "unknown cell": ("model: {cell: lstmm}\n", [], ["model.cell", "lstmm", "'lstm'"]),
    "dropout range": ("model: {dropout: 1.5}\n", [], ["model.dropout", "1.5"]),
    "wrong type": ("train: {max_steps: many}\n", [], ["train.max_steps", "integer", "many"]),
    "--set no =": ("", ["--set", "model.hidden_size"], ["model.hidden_size", "section.key=value"]),
    "--set bad yaml": ("", ["--set", "model.cell=[gru"], ["model.cell=[gru", "cannot parse"]),
    "--set no key": ("", ["--set", "model.hiden=3"], ["model.hiden", "hidden_size"]),
    "--set no section": ("", ["--set", "modle.cell=gru"], ["modle", "'model'"]),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_errors(tmp_path, case):
    text, args, needles = CONFIG_CASES[case]
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    if "--config" not in args:
        args = ["--config", "c.yaml"] + args
    fails(seq2seq("train", *args, "--out", "run", cwd=tmp_path, check=False), *needles)
    assert not (tmp_path / "run").exists()


# -- data -----------------------------------------------------------------------------------

def _text_pairs(d):
    (d / "a.de").write_text("1\n2\n3\n", encoding="utf-8")
    (d / "a.en").write_text("1\n2\n", encoding="utf-8")
    return ["--set", "data.path=text", "--set",
            "data.data_files={train: [a.de, a.en], validation: [a.de, a.en]}"]


def _translation_layout(d):
    (d / "tr.jsonl").write_text(json.dumps({"translation": {"de": "x", "en": "y"}}) + "\n")
    return ["--set", "data.data_files={train: tr.jsonl}", "--set", "data.src=de", "--set",
            "data.tgt=fr"]


def _non_utf8(d):
    (d / "t.src").write_bytes(b"a b\nc \xe4 d\n")
    (d / "t.tgt").write_bytes(b"b a\nd c\n")
    return ["--set", "data.path=text", "--set",
            "data.data_files={train: [t.src, t.tgt], validation: [t.src, t.tgt]}"]


def _empty_train(d):
    (d / "e.jsonl").write_text("")
    return ["--set", "data.data_files={train: e.jsonl, validation: valid.jsonl}"]


DATA_CASES = {
    "missing json": (lambda d: ["--set", "data.data_files={train: nope.jsonl}"],
                     ["nope.jsonl", "does not exist"]),
    "line counts": (_text_pairs, ["a.de has 3 lines", "a.en has 2"]),
    "no column": (lambda d: ["--set", "data.src=de"], ["'de'", "columns: src, tgt"]),
    "no translation key": (_translation_layout, ["'fr'", "it has: de, en"]),
    "empty split": (_empty_train, ["e.jsonl", "empty"]),
    "non-utf8": (_non_utf8, ["t.src line 2", "not UTF-8", "--encoding-errors replace"]),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_data_errors(tmp_path, case):
    make, needles = DATA_CASES[case]
    write_config(tmp_path)
    fails(seq2seq("train", "--config", "cfg.yaml", *make(tmp_path), "--out", "run",
                  cwd=tmp_path, check=False), *needles)


def test_unreachable_hub_fails_fast_and_says_how_to_use_local_files(tmp_path):
    write_config(tmp_path)
    t0 = time.time()
    p = seq2seq("train", "--config", "cfg.yaml", "--set", "data.path=no-such-user/no-such-set",
                "--out", "run", cwd=tmp_path, env={"HF_HUB_OFFLINE": "0",
                                                   "HF_DATASETS_OFFLINE": "0"}, timeout=60,
                check=False)
    assert time.time() - t0 < 30
    fails(p, "no-such-user/no-such-set", "data.path=json", "data.data_files")


# -- checkpoints ----------------------------------------------------------------------------

def _truncated(run, d):
    data = (run / "last.pt").read_bytes()
    (d / "c.pt").write_bytes(data[:len(data) // 2])


def _corrupted(run, d):
    data = bytearray((run / "last.pt").read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 4096):  # overwrite a stretch in the middle
        data[i] = 0xAB
    (d / "c.pt").write_bytes(bytes(data))


def _other_version(run, d):
    ckpt = torch.load(run / "last.pt", weights_only=False)
    ckpt.update(format=99, version="9.9.9")
    torch.save(ckpt, d / "c.pt")


CKPT_CASES = {
    "missing": (lambda run, d: None, ["c.pt", "does not exist"]),
    "truncated": (_truncated, ["c.pt", "truncated or corrupted"]),
    "corrupted": (_corrupted, ["c.pt", "corrupted"]),
    "other version": (_other_version, ["format 99", "9.9.9", "reads format 1"]),
    "not ours": (lambda run, d: torch.save({"state_dict": {}}, d / "c.pt"),
                 ["c.pt", "not a seq2seq checkpoint"]),
}


@pytest.mark.parametrize("case", CKPT_CASES)
def test_checkpoint_errors(trained, tmp_path, case):
    make, needles = CKPT_CASES[case]
    make(trained, tmp_path)
    fails(seq2seq("translate", "--checkpoint", "c.pt", input="a b\n", cwd=tmp_path,
                  check=False), *needles)


def test_a_run_folder_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="run holds no checkpoint"):
        checkpoint.load(tmp_path / "run")


# -- translate input ------------------------------------------------------------------------

def test_translate_messy_input_gives_one_line_per_line(trained, tmp_path):
    lines = ["a b c", "", "   ", "\t", "🎉" * 300,  # 1200 byte pieces: over the 1024 limit
             "unseen: ü ß 日本 שלום \u0301\u200f", "\x00\x1b[31m ctrl \x7f", "a\rb", "▁ x",
             "d e\r"]  # a CRLF line end
    raw = "\n".join(lines).encode("utf-8")  # and no final newline
    (tmp_path / "in.txt").write_bytes(raw)
    p = seq2seq("translate", "--checkpoint", trained, "--input", "in.txt", "--max-len-a", "0",
                "--max-len-b", "4", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert out[1] == out[2] == out[3] == ""
    assert "truncated" in p.stderr and "line 5" in p.stderr


def test_translate_non_utf8_input(trained, tmp_path):
    (tmp_path / "in.txt").write_bytes(b"a b\nc \xff d\ne\n")
    fails(seq2seq("translate", "--checkpoint", trained, "--input", "in.txt", cwd=tmp_path,
                  check=False), "in.txt line 2", "not UTF-8", "--encoding-errors replace")
    p = seq2seq("translate", "--checkpoint", trained, "--input", "in.txt", "--encoding-errors",
                "replace", cwd=tmp_path)
    assert p.returncode == 0 and len(p.stdout.split("\n")) == 4, p.stderr


# In-process runs of the CLI, for the fuzzing below and for the injected NaN.

def run_main(args, stdin: bytes = b""):
    """``seq2seq ARGS`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main([str(a) for a in args])
    finally:
        sys.stdin = old
    return rc, out.getvalue(), err.getvalue()


def expected_lines(raw: bytes) -> int:
    """Lines as the CLI counts them: split at b"\\n", a final newline ends the last line."""
    return len(raw.split(b"\n")) - (1 if raw.endswith(b"\n") else 0) if raw else 0


NASTY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30) | \
    st.sampled_from(["", " ", "\u0301\u0301", "שלום", "🎉👩‍👩‍👧", "\x00\x1b", "\u2028", "▁",
                     "\r", "x" * 2000])
LINE = NASTY_TEXT.map(lambda s: s.replace("\n", " ").encode("utf-8")) | st.binary(max_size=40)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, max_size=6), final_newline=st.booleans())
def test_fuzz_translate_one_line_out_per_line_in(trained, lines, final_newline):
    raw = b"\n".join(l.replace(b"\n", b" ") for l in lines) + (b"\n" if final_newline else b"")
    args = ["translate", "--checkpoint", trained, "--max-len-a", "0", "--max-len-b", "3"]
    rc, out, err = run_main(args + ["--encoding-errors", "replace"], raw)
    assert rc == 0, err
    assert out.count("\n") == expected_lines(raw)
    rc, out, err = run_main(args, raw)  # strict: the same, or an error naming the first bad line
    if rc:
        assert rc == 2 and "not UTF-8" in err and "Traceback" not in err
        bad = next(n for n, l in enumerate(raw.split(b"\n"), 1) if not _utf8(l))
        assert f"stdin line {bad}:" in err
    else:
        assert out.count("\n") == expected_lines(raw)


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# -- training faults ------------------------------------------------------------------------

def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                            monkeypatch):
    import seq2seq.training.objective as model_mod

    real, calls = model_mod.projected_losses, []

    def exploding(*args, **kwargs):
        losses = real(*args, **kwargs)
        if not torch.is_grad_enabled():  # validation computes its losses the same way
            return losses
        calls.append(1)
        if len(calls) >= 5:
            losses = losses._replace(objective=losses.objective * float("nan"))
        return losses

    monkeypatch.setattr(model_mod, "projected_losses", exploding)
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, train_keys="max_steps: 20, batch_size: 4, eval_every: 2")
    rc, out, err = run_main(["train", "--config", "cfg.yaml", "--out", "run", "--no-progress"])
    line = fails(subprocess.CompletedProcess([], rc, out, err), "nan", "at step 5",
                 "last.pt (step 4)", only=False)
    assert "train.lr" in line
    ckpt = checkpoint.load(tmp_path / "run" / "last.pt")
    assert ckpt["train_state"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "last.pt").read_bytes()
    write_config(tmp_path)
    fails(seq2seq("train", "--config", "cfg.yaml", "--out", "run", cwd=tmp_path, check=False),
          "already holds a run", "--resume", "--overwrite")
    assert (run / "last.pt").read_bytes() == before
    assert RunFolder(run).prepare(resume=True, overwrite=False) == run / "last.pt"
    assert RunFolder(run).prepare(resume=False, overwrite=True) is None
    assert not (run / "last.pt").exists() and not (run / "metrics.jsonl").exists()


SAVER = """
import sys, torch
from seq2seq.training.checkpoint import save
payload = {"model": {"w": torch.zeros(4_000_000)}, "config": {}, "tokenizer": {}}
print("ready", flush=True)
i = 0
while True:
    i += 1
    payload["i"] = i
    save(payload, sys.argv[1])
"""


def test_sigkill_while_saving_leaves_the_previous_checkpoint(trained, tmp_path):
    target = tmp_path / "last.pt"
    shutil.copy(trained / "last.pt", target)
    good = target.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until a save is half-way through its temp file
            tmps = list(tmp_path.glob(".last.pt.*.tmp"))
            if tmps and tmps[0].exists() and tmps[0].stat().st_size > 1_000_000:
                break
            time.sleep(0.002)
        else:
            pytest.fail("the saver never wrote a temporary file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ckpt = checkpoint.load(target)  # loads: the old one, or a new one written in full
    assert target.read_bytes() == good or ckpt["model"]["w"].numel() == 4_000_000
    RunFolder(tmp_path).prepare(resume=True, overwrite=False)  # the next run clears what a kill left
    assert not list(tmp_path.glob(".last.pt.*.tmp"))


def test_sigint_saves_a_checkpoint_and_resume_continues(tmp_path):
    write_config(tmp_path, train_keys="epochs: 100000, batch_size: 4, eval_every: 5, "
                                      "valid_max_sentences: 3")
    proc = subprocess.Popen([sys.executable, "-m", "seq2seq", "train", "--config", "cfg.yaml",
                             "--out", "run", "--no-progress"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not (tmp_path / "run" / "metrics.jsonl").exists():  # in the loop by now
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "training never validated"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stopped by SIGINT at step" in err and "--resume" in err
    step = checkpoint.load(tmp_path / "run" / "last.pt")["train_state"]["step"]
    assert f"at step {step};" in err and step >= 5
    p = seq2seq("train", "--config", "cfg.yaml", "--set", f"train.max_steps={step + 2}",
                "--out", "run", "--resume", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"resumed from run/last.pt at step {step}" in p.stderr
    assert checkpoint.load(tmp_path / "run" / "last.pt")["train_state"]["step"] == step + 2


def test_sigterm_saves_a_checkpoint_at_the_current_step(tmp_path, monkeypatch):
    """In-process, with SIGTERM sent (to this process) during step 4."""
    import seq2seq.training.loop as train_mod

    real = train_mod.learning_rate

    def lr_then_term(cfg, step, *args):
        if step == 3:  # the 4th step is starting
            os.kill(os.getpid(), signal.SIGTERM)
        return real(cfg, step, *args)

    monkeypatch.setattr(train_mod, "learning_rate", lr_then_term)
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    write_config(tmp_path, train_keys="max_steps: 50, batch_size: 4")
    rc, out, err = run_main(["train", "--config", "cfg.yaml", "--out", "run", "--no-progress"])
    assert rc == 143 and "Traceback" not in err, err  # 128 + SIGTERM, as the convention goes
    assert "stopped by SIGTERM at step 4" in err
    assert checkpoint.load(tmp_path / "run" / "last.pt")["train_state"]["step"] == 4
    assert signal.getsignal(signal.SIGTERM) == handler  # the handler is put back


def test_non_utf8_data_can_be_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, train_keys="max_steps: 1, batch_size: 4")
    rc, out, err = run_main(["train", "--config", "cfg.yaml", *_non_utf8(tmp_path),
                             "--encoding-errors", "replace", "--out", "run", "--no-progress"])
    assert rc == 0, err
    assert (tmp_path / "run" / "last.pt").is_file()


def test_evaluate_finds_relative_data_files_from_another_folder(tmp_path):
    """A run trained on data files given relative to its folder is evaluated from elsewhere:
    the run stores the files it read, resolved."""
    write_config(tmp_path)
    p = seq2seq("train", "--config", "cfg.yaml", "--out", "run", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = seq2seq("evaluate", "--checkpoint", tmp_path / "run", "--split", "test", "--json",
                cwd=elsewhere)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["n"] == 3


def test_training_threads_default_to_one():
    """Two torch threads stall when another process takes a core: the default is one."""
    from seq2seq.config import TrainConfig

    assert TrainConfig().threads == 1
