"""ONNX export: the exported graphs, run by ONNX Runtime, decode what the PyTorch model decodes
(both cells, every attention, input feeding, greedy and beam), and the CLI path through an
exported folder (``export``, ``translate``, ``evaluate``), with its errors."""

import json
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import fit, seq2seq, with_decode  # noqa: E402
from seq2seq.data.batching import collate  # noqa: E402
from seq2seq.config import Config, ModelConfig  # noqa: E402
from seq2seq.decoding.search import beam_search, greedy, translate  # noqa: E402
from seq2seq.deploy.export import export_model  # noqa: E402
from seq2seq.model.seq2seq import Seq2Seq  # noqa: E402
from seq2seq.decoding.onnx_model import OnnxSeq2Seq  # noqa: E402
from seq2seq.config import TokenizerConfig  # noqa: E402
from seq2seq.data.tokenizer import PAD, Tokenizer, train_model  # noqa: E402
from seq2seq.load import load_exported  # noqa: E402

from test_cli import toy  # noqa: E402,F401  (the CLI's toy run, trained once)

LETTERS = "abcdefgh"
MODELS = {  # name: model settings; together they cover both cells, each attention, feeding
    "lstm-bahdanau": dict(cell="lstm", attention="bahdanau"),
    "gru-luong-feed": dict(cell="gru", attention="luong", input_feeding=True),
    "lstm-none-2layers-feed": dict(cell="lstm", attention="none", num_layers=2,
                                   input_feeding=True),
    "gru-bahdanau-tied-manual": dict(cell="gru", attention="bahdanau", tie_embeddings=True,
                                     impl="manual", embedding_dim=24),
}


def reverse_pairs(n: int, seed: int):
    rng = random.Random(seed)
    src = [" ".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 7))) for _ in range(n)]
    return src, [" ".join(s.split()[::-1]) for s in src]


@pytest.fixture(scope="module")
def tok():
    src, tgt = reverse_pairs(300, 0)
    return Tokenizer(train_model(src + tgt, TokenizerConfig(vocab_size=300)))


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tok, tmp_path_factory):
    """A tiny model trained a little on reversing letters (it says EOS, but is unsure enough
    for beams to differ), and its float32 export."""
    mcfg = ModelConfig(**{**dict(embedding_dim=16, hidden_size=24, dropout=0.0),
                          **MODELS[request.param]})
    torch.manual_seed(0)
    model = Seq2Seq.from_config(mcfg, tok.src_vocab_size, tok.tgt_vocab_size, PAD)
    src, tgt = reverse_pairs(64, 1)
    batch = collate(tok.encode_src(src), tok.encode_tgt(tgt), range(len(src)))
    fit(model, batch, 40).eval()
    out = tmp_path_factory.mktemp("export") / request.param
    info = export_model(model, tok, Config(model=mcfg), out, log=lambda m: None)
    return model, OnnxSeq2Seq(out), info


sources = st.lists(st.lists(st.integers(4, 40), min_size=1, max_size=12), min_size=1,
                   max_size=6)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(src=sources)
def test_greedy_outputs_and_attention_equal_pytorch(exported, src):
    model, onnx_model, _ = exported
    batch = collate(src, None, range(len(src)))
    ref, ref_att, _ = greedy(model, batch.src, batch.src_len, return_attention=True)
    out, att, _ = greedy(onnx_model, batch.src, batch.src_len, return_attention=True)
    assert out == ref
    if ref_att is None:
        assert att is None
    else:
        for a, b in zip(att, ref_att):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(src=sources, beam=st.integers(2, 4))
def test_beam_outputs_and_scores_equal_pytorch(exported, src, beam):
    model, onnx_model, _ = exported
    batch = collate(src, None, range(len(src)))
    ref = beam_search(model, batch.src, batch.src_len, beam, n_best=beam)
    out = beam_search(onnx_model, batch.src, batch.src_len, beam, n_best=beam)
    assert [[h.tokens for h in x] for x in out] == [[h.tokens for h in x] for x in ref]
    for x, y in zip(out, ref):
        for h, r in zip(x, y):
            assert h.score == pytest.approx(r.score, abs=1e-4)


def test_dynamic_batch_and_length_and_first_step_logits(exported):
    model, onnx_model, info = exported
    assert info["check"]["greedy_identical"] == info["check"]["sentences"]
    assert info["check"]["max_logit_diff"] < 1e-4
    for B, S in [(1, 1), (9, 30), (2, 5)]:  # none of these is the traced (3, 7)
        src = torch.randint(4, 40, (B, S))
        src_len = torch.randint(1, S + 1, (B,))
        src_len[0] = S
        src = src.masked_fill(torch.arange(S)[None] >= src_len[:, None], PAD)
        with torch.inference_mode():
            a, b = model.encoder(src, src_len), onnx_model.encoder(src, src_len)
            assert a.out.shape == b.out.shape and torch.allclose(a.out, b.out, atol=1e-5)
            y = torch.full((B,), 2)
            la, sa, _ = model.decoder.step(y, model.decoder.start(a), a)
            lb, sb, _ = onnx_model.decoder.step(y, onnx_model.decoder.start(b), b)
            assert torch.allclose(la, lb, atol=1e-4)
            assert torch.allclose(sa.rnn.h, sb.rnn.h, atol=1e-5)


def test_int8_export_is_smaller_and_mostly_agrees(tok, tmp_path):
    mcfg = ModelConfig(cell="lstm", embedding_dim=32, hidden_size=64, dropout=0.0)
    torch.manual_seed(0)
    model = Seq2Seq.from_config(mcfg, tok.src_vocab_size, tok.tgt_vocab_size, PAD).eval()
    f32 = export_model(model, tok, Config(model=mcfg), tmp_path / "f32", log=lambda m: None)
    i8 = export_model(model, tok, Config(model=mcfg), tmp_path / "i8", int8=True,
                      log=lambda m: None)
    assert i8["int8"] and i8["bytes"]["total"] < 0.5 * f32["bytes"]["total"]
    onnx_model, tok2, _ = load_exported(tmp_path / "i8")
    src, _ = reverse_pairs(20, 5)
    hyps = translate(onnx_model, tok2, src, Config().decode).hyps
    assert len(hyps) == len(src)
    with torch.inference_mode():
        batch = collate(tok.encode_src(src), None, range(len(src)))
        a, b = model.encoder(batch.src, batch.src_len), onnx_model.encoder(batch.src,
                                                                            batch.src_len)
    assert (a.out - b.out).abs().max() < 0.1  # int8 weights: close, not equal


# -- the command line -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_export(toy):
    out = toy.dir / "exported"
    p = seq2seq("export", "--checkpoint", toy.run, "--out", out, cwd=toy.dir)
    assert "export check on" in p.stderr and f"--checkpoint {out}" in p.stderr
    return out


def test_export_help_explains_itself(tmp_path):
    text = seq2seq("export", "--help", cwd=tmp_path).stdout
    for word in ("--checkpoint", "--out", "--int8", "--overwrite", "decoder_step.onnx",
                 "seq2seq[deploy]"):
        assert word in text


def test_exported_folder_translates_like_the_checkpoint(toy, toy_export):
    text = "cat\n\ndog house\ntree\napple mouse\n"
    for opts in ([], ["--beam", "3", "--n-best", "2"]):
        ref = seq2seq("translate", "--checkpoint", toy.run, *opts, input=text, cwd=toy.dir)
        out = seq2seq("translate", "--checkpoint", toy_export, *opts, input=text, cwd=toy.dir)
        assert out.stdout == ref.stdout
    plots = toy.dir / "plots-onnx"
    seq2seq("translate", "--checkpoint", toy_export, "--attention-plot", plots, input=text,
            cwd=toy.dir)
    assert len(list(plots.glob("*.png"))) == 4  # one per non-empty line
    info = json.loads((toy_export / "export.json").read_text())
    assert info["graphs"]["decoder_step.onnx"]["inputs"][:2] == ["y_prev", "h"]


def test_evaluate_accepts_an_exported_folder(toy, toy_export):
    ref = seq2seq("evaluate", "--checkpoint", toy.run, "--json", cwd=toy.dir)
    out = seq2seq("evaluate", "--checkpoint", toy_export, "--json", cwd=toy.dir)
    assert json.loads(out.stdout)["bleu"] == json.loads(ref.stdout)["bleu"]


def test_int8_export_from_the_cli(toy):
    out = toy.dir / "deploy" / "exported-int8"  # deploy/ does not exist yet: made, as by train
    seq2seq("export", "--checkpoint", toy.run, "--out", out, "--int8", cwd=toy.dir)
    p = seq2seq("translate", "--checkpoint", out, input="cat\ndog\n", cwd=toy.dir)
    assert len(p.stdout.splitlines()) == 2


@pytest.mark.parametrize("args, message", [
    (["--impl", "manual"], "--impl chooses PyTorch's layers"),
    (["--bf16"], "--bf16 is for PyTorch models"),
])
def test_options_that_do_not_fit_an_exported_model(toy, toy_export, args, message):
    p = seq2seq("translate", "--checkpoint", toy_export, *args, input="cat\n", cwd=toy.dir,
                check=False)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("decode, beam", [({"beam": 3, "coverage_penalty": 0.2}, 1),
                                          ({"sample": True}, 3)], ids=["coverage", "sample"])
def test_a_checkpoint_that_penalizes_coverage_or_samples_exports(toy, tmp_path, decode, beam):
    """The export's check decodes greedy (the argmax) and with a beam, whatever the checkpoint's
    decode section says: its coverage penalty (beam > 1) or sampling (beam 1) is dropped where
    that beam makes it meaningless, instead of aborting the export; so is it when the exported
    folder translates at such a beam (the original checkpoint's output at that beam)."""
    ckpt = with_decode(toy.run, tmp_path / "decode.pt", **decode)
    out = tmp_path / "exported"
    seq2seq("export", "--checkpoint", ckpt, "--out", out, cwd=toy.dir)
    check = json.loads((out / "export.json").read_text())["check"]
    assert check["greedy_identical"] == check["sentences"] > 0
    text = "cat\ndog house\ntree\n"
    ref = seq2seq("translate", "--checkpoint", toy.run, "--beam", beam, input=text, cwd=toy.dir)
    got = seq2seq("translate", "--checkpoint", out, "--beam", beam, input=text, cwd=toy.dir)
    assert got.stdout == ref.stdout


def test_export_does_not_overwrite_by_accident(toy, toy_export):
    p = seq2seq("export", "--checkpoint", toy.run, "--out", toy_export, cwd=toy.dir, check=False)
    assert p.returncode == 2 and "--overwrite" in p.stderr
    p = seq2seq("export", "--checkpoint", toy.run, "--out", toy.run, cwd=toy.dir, check=False)
    assert p.returncode == 2 and "not an exported model" in p.stderr
    assert (toy.run / "best.pt").is_file()


def test_without_onnxruntime_one_line_says_what_to_install(toy, toy_export, tmp_path):
    fake = tmp_path / "no_deploy"  # modules that fail to import, ahead of the real ones
    fake.mkdir()
    for name in ("onnx", "onnxruntime"):
        (fake / f"{name}.py").write_text(f"raise ImportError('No module named {name}')\n")
    env = {"PYTHONPATH": f"{fake}:{__import__('os').environ.get('PYTHONPATH', '')}"}
    for args in (["export", "--checkpoint", toy.run, "--out", tmp_path / "x"],
                 ["translate", "--checkpoint", toy_export]):
        p = seq2seq(*args, input="cat\n", cwd=toy.dir, env=env, check=False)
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and "pip install 'seq2seq[deploy]'" in p.stderr
        assert not (tmp_path / "x").exists()
