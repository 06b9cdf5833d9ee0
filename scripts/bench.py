#!/usr/bin/env python
"""Benchmarks: recurrent layers, training steps, greedy decoding, data loading, memory.

Every comparison runs its sides interleaved in one process (A B A B ...) and reports the
median and min-max over repeats, with the torch version, thread count and CPU model.

    python scripts/bench.py layer            # manual (fast, plain) vs fused LSTM/GRU, fwd+bwd
    python scripts/bench.py train            # training steps: plain vs fast fp32 vs bf16, with
                                             # the FLOP account and % of the oneDNN fp32 peak;
                                             # two-pass sampling vs the stepping loop vs tf=1
    python scripts/bench.py train --models joey-gru --threads 1   # one model: a short run
    python scripts/bench.py decode           # greedy: PyTorch vs ONNX Runtime float32 and int8,
                                             # batched and one sentence at a time
    python scripts/bench.py data             # load + tokenize + batch Multi30k
    python scripts/bench.py memory           # peak RSS of a short training run
    python scripts/bench.py all --json       # everything, one JSON object

Multi30k is read from --data-dir (default ../shared/data/multi30k) when present, else
synthetic data of the same shape is used.
"""

import argparse
import json
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from seq2seq.config import Config, ModelConfig, from_dict  # noqa: E402
from seq2seq.data.batching import IdPairs, bucket_batches, collate, iterate, padding_fraction  # noqa: E402
from seq2seq.decoding.search import greedy  # noqa: E402
from seq2seq.kernels.device import bf16_weights  # noqa: E402
from seq2seq.kernels.fast_rnn import FastManualRNN  # noqa: E402
from seq2seq.training.loss import projected_losses  # noqa: E402
from seq2seq.model.seq2seq import Seq2Seq  # noqa: E402
from seq2seq.model.rnn import ManualRNN, make_rnn  # noqa: E402
from seq2seq.data.tokenizer import PAD, Tokenizer  # noqa: E402
from seq2seq.training.objective import Objective  # noqa: E402
from seq2seq.training.optim import make_optimizer  # noqa: E402
from seq2seq.training.two_pass import TwoPass  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "multi30k"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def env() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "python": platform.python_version()}


def interleave(fns: dict, repeats: int, warmup: int = 1, clock=time.perf_counter) -> dict:
    """Time each callable ``repeats`` times, interleaved; returns seconds per side."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return times


def paired_ratio(a, b) -> float:
    """Median over rounds of ``a[i] / b[i]``: robust to load that drifts between rounds."""
    return statistics.median(x / y for x, y in zip(a, b))


def summary(ts) -> dict:
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}


def table(rows, cols) -> str:
    w = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    line = lambda vals: "| " + " | ".join(str(v).ljust(n) for v, n in zip(vals, w)) + " |"
    return "\n".join([line(cols), "|" + "|".join("-" * (n + 2) for n in w) + "|"] +
                     [line([r.get(c, "") for c in cols]) for r in rows])


# -- layer ------------------------------------------------------------------------------------

def onednn_peak() -> float:
    """The per-thread fp32 limit in GFLOP/s: a oneDNN product with a prepacked weight."""
    from flop_account import matmul_peaks

    return matmul_peaks()["onednn"] / 1e9


def lstm_flops(cell, B, T, I, H) -> float:
    gates = 4 if cell == "lstm" else 3
    return 3 * 2 * B * T * gates * H * (I + H)  # forward + backward (about 2x forward)


def bench_layer(args) -> dict:
    """Forward+backward of one layer: manual (fast), manual without oneDNN, plain manual, fused."""
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    peak = onednn_peak()
    shapes = [(64, 30, 256, 512), (64, 20, 256, 256), (32, 50, 512, 512)]
    rows = []
    for cell in ("lstm", "gru"):
        for B, T, I, H in shapes:
            torch.manual_seed(0)
            fused = make_rnn(cell, "fused", I, H)
            layers = {"fast": FastManualRNN(cell, I, H),
                      "no-oneDNN": FastManualRNN(cell, I, H, prepack=False),
                      "plain": ManualRNN(cell, I, H), "fused": fused}
            for layer in layers.values():
                layer.load_state_dict(fused.state_dict())
            x = torch.randn(B, T, I, requires_grad=True)

            def step(layer):
                out, _ = layer(x)
                out.sum().backward()
            sides = {k: lambda layer=layer: step(layer) for k, layer in layers.items()}
            ts = interleave(sides, args.repeats, clock=clock)
            med = {k: statistics.median(v) for k, v in ts.items()}
            flops = lstm_flops(cell, B, T, I, H)
            ms = lambda k: f"{1e3 * med[k]:.1f} ({1e3 * min(ts[k]):.0f}-{1e3 * max(ts[k]):.0f})"
            rows.append({"cell": cell, "shape (B,T,I,H)": f"{B},{T},{I},{H}",
                         "fused ms": ms("fused"), "fast ms": ms("fast"), "plain ms": ms("plain"),
                         "fast/fused": round(paired_ratio(ts["fast"], ts["fused"]), 2),
                         "no-oneDNN/fused": round(paired_ratio(ts["no-oneDNN"], ts["fused"]), 2),
                         "plain/fused": round(paired_ratio(ts["plain"], ts["fused"]), 2),
                         "fast tok/s": int(B * T / med["fast"]),
                         "fast GFLOP/s": round(flops / med["fast"] / 1e9, 1),
                         "fused GFLOP/s": round(flops / med["fused"] / 1e9, 1),
                         "fast % of oneDNN": round(100 * flops / med["fast"] / 1e9 / peak),
                         "fused % of oneDNN": round(100 * flops / med["fused"] / 1e9 / peak)})
    print(f"oneDNN fp32 peak (prepacked 2048x768 @ 768x2048, best of 20): {peak:.0f} GFLOP/s; "
          f"{args.clock} time; "
          "fast = FastManualRNN's hand-written backward (seq2seq.kernels.recurrence), no-oneDNN = "
          "the same with plain addmm (prepack=False), plain = ManualRNN, the cells under autograd "
          "(the reference); ratios: median over rounds")
    print(table(rows, list(rows[0])))
    return {"onednn_peak_gflops": peak, "clock": args.clock, "rows": rows}


# -- data ------------------------------------------------------------------------------------

def multi30k_lines(data_dir: Path, split: str, n_synth: int):
    if (data_dir / f"{split}.de").is_file():
        read = lambda p: p.read_text(encoding="utf-8").splitlines()
        return read(data_dir / f"{split}.de"), read(data_dir / f"{split}.en"), True
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    src = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 25))) for _ in range(n_synth)]
    tgt = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 25))) for _ in range(n_synth)]
    return src, tgt, False


def model_config(args) -> ModelConfig:
    path = Path(__file__).resolve().parent.parent / "recipes" / "multi30k.yaml"
    import yaml

    d = yaml.safe_load(path.read_text())["model"] if path.is_file() else {}
    return from_dict({"model": d}).model


def bench_data(args, quiet=False) -> dict:
    t0 = time.perf_counter()
    src, tgt, real = multi30k_lines(args.data_dir, "train", 29000)
    t1 = time.perf_counter()
    tok = Tokenizer.train(src, tgt, Config().tokenizer)
    t2 = time.perf_counter()
    s_ids, t_ids = tok.encode_src(src), tok.encode_tgt(tgt)
    t3 = time.perf_counter()
    lens = [len(t) + 1 for t in t_ids]
    batches = bucket_batches([len(s) for s in s_ids], lens, 64, seed=1)
    t4 = time.perf_counter()
    rand = [list(range(i, min(i + 64, len(lens)))) for i in range(0, len(lens), 64)]
    res = {"real_data": real, "pairs": len(src), "read_s": t1 - t0, "tokenizer_train_s": t2 - t1,
           "encode_s": t3 - t2, "batch_s": t4 - t3, "total_s": t4 - t0,
           "padding_bucketed": padding_fraction(lens, batches),
           "padding_unbucketed": padding_fraction(lens, rand)}
    if not quiet:
        print(table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in res.items()}],
                    list(res)))
    return res, (tok, s_ids, t_ids)


# -- train -----------------------------------------------------------------------------------

class NaiveSeq2Seq(nn.Module):
    """The tutorial way: bi-LSTM encoder over padded input, nn.LSTMCell decoder stepped in a
    Python loop with Luong attention, output projection over every padded position."""

    def __init__(self, V_src, V_tgt, E, H):
        super().__init__()
        self.src_emb, self.tgt_emb = nn.Embedding(V_src, E), nn.Embedding(V_tgt, E)
        self.enc = nn.LSTM(E, H, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * H, H)
        self.cell = nn.LSTMCell(E, H)
        self.attn = nn.Linear(2 * H, H, bias=False)
        self.comb = nn.Linear(3 * H, H)
        self.out = nn.Linear(H, V_tgt)

    def forward(self, src, tgt_in, tf_ratio):
        enc, (h, c) = self.enc(self.src_emb(src))
        h = torch.tanh(self.bridge(torch.cat([h[0], h[1]], -1)))
        c = torch.tanh(self.bridge(torch.cat([c[0], c[1]], -1)))
        keys = self.attn(enc)
        y = tgt_in[:, 0]
        logits = []
        for t in range(tgt_in.size(1)):
            h, c = self.cell(self.tgt_emb(y), (h, c))
            w = torch.softmax((keys @ h.unsqueeze(-1)).squeeze(-1), -1)
            ctx = (w.unsqueeze(1) @ enc).squeeze(1)
            lo = self.out(torch.tanh(self.comb(torch.cat([h, ctx], -1))))
            logits.append(lo)
            if t + 1 < tgt_in.size(1):
                y = tgt_in[:, t + 1] if random.random() < tf_ratio else lo.argmax(-1)
        return torch.stack(logits, 1)


def joey_shape(mcfg) -> ModelConfig:
    """The Joey-shape GRU model of ``../shared/checks/flops.sh``: biGRU 128/256, Bahdanau,
    input feeding, untied output."""
    return dataclass_replace(mcfg, cell="gru", impl="fused", embedding_dim=128, hidden_size=256,
                             num_layers=1, bidirectional=True, dropout=0.2, input_feeding=True,
                             tie_embeddings=False, attention="bahdanau")


def train_model(cfg, tok, fast=True, two_pass=None):
    """The model of ``cfg`` (seeded) and its training objective, as ``seq2seq train`` builds
    them; ``fast`` False: the plain torch path of the training step, chosen by constructor
    arguments (the unfused loss over (B, T, V) logits, no oneDNN prepacking, the values'
    attention gradient per step); ``two_pass``: a :class:`TwoPass` (``teacher_forcing.passes:
    2``) instead of the stepping decoder below ratio 1."""
    torch.manual_seed(0)
    model = Seq2Seq.from_config(cfg, tok.src_vocab_size, tok.tgt_vocab_size, PAD,
                                prepack=fast, defer_value_grads=fast)
    return model, Objective(model, fused=None if fast else False, two_pass=two_pass)


#: the rows of two-pass sampling against the stepping loop and teacher forcing: the recipe's
#: model without input feeding (which two passes need), fast fp32; label -> train_model's and
#: train_step_fn's arguments
TWO_PASS_VARIANTS = [
    ("no-feed fp32 tf=1.0", dict(input_feeding=False)),
    ("no-feed fp32 tf=0.5 stepping", dict(input_feeding=False, tf=0.5)),
    ("no-feed fp32 tf=0.5 two-pass argmax", dict(input_feeding=False, tf=0.5,
                                                 two_pass=TwoPass("argmax"))),
    ("no-feed fp32 tf=0.5 two-pass soft", dict(input_feeding=False, tf=0.5,
                                               two_pass=TwoPass("soft"))),
    ("no-feed fp32 tf=0.5 two-pass soft+grad", dict(input_feeding=False, tf=0.5,
                                                    two_pass=TwoPass("soft", True))),
]


def train_step_fn(objective, opt, batches, tf=1.0, amp=False, ntok=None):
    """A callable that trains on ``batches`` as ``seq2seq train`` does."""
    model = objective.model

    def run():
        n_all = 0
        for b in batches:
            with torch.autocast("cpu", torch.bfloat16, enabled=amp):
                losses = objective(b.src, b.src_len, b.tgt_in, b.tgt_out, tf)
            opt.zero_grad(set_to_none=True)
            (losses.objective / losses.n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            n_all += losses.n
        if ntok is not None:
            ntok.append(n_all)
    return run


#: the parts of a training step that :func:`step_split` times, in the order they run
PARTS = ("encoder fwd", "decoder fwd", "loss fwd+bwd", "decoder bwd", "encoder bwd", "clip + Adam")


def step_split(model, opt, batches, amp=False) -> dict:
    """Wall-clock seconds of each part (:data:`PARTS`) of training steps on ``batches``, by
    clock reads between them: no profiler, whose per-op overhead inflates small ops. The steps
    of ``Seq2Seq.forward`` are written out so that each can be timed: the encoder (with the
    bridge), the decoder's features (with the attention keys' projection), the fused output
    projection + loss (which also computes its gradients). The backward is split where the
    gradient of the encoder outputs is complete (a tensor hook): before it the decoder's steps,
    the target embedding, the keys' projection and the bridge; after it the encoder's layers and
    the source embedding."""
    clock, parts = time.perf_counter, dict.fromkeys(PARTS, 0.0)
    pad = model.decoder.embedding.padding_idx
    for b in batches:
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            t0 = clock()
            enc = model.encoder(b.src, b.src_len)
            t1 = clock()
            features = model.decoder.features(enc, b.tgt_in)
            t2 = clock()
            out = model.decoder.out
            losses = projected_losses(features, out.weight, out.bias, b.tgt_out, pad)
            t3 = clock()
        reached = []
        enc.out.register_hook(lambda g: reached.append(clock()))
        opt.zero_grad(set_to_none=True)
        t4 = clock()
        (losses.objective / losses.n).backward()
        t5 = clock()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t6 = clock()
        for k, dt in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, reached[0] - t4, t5 - reached[0],
                                 t6 - t5)):
            parts[k] += dt
    return parts


def split_table(models: dict, accounts: dict, tok, batches, tgt_tok: int, src_per_tgt: float,
                peak: float, repeats: int) -> list:
    """Where the time of a training step goes, per model and precision: each part's share, and
    for the parts with matmuls their FLOPs as GFLOP/s and % of the oneDNN fp32 peak: the
    account's encoder without the attention keys for the encoder parts (1/3 forward, 2/3
    backward), its decoder, attention and keys for the decoder parts (likewise; the decoder
    runs the keys' projection), its output projection for the loss."""
    from flop_account import key_flops_per_target_token

    sides, models_of = {}, {}
    for name, cfg in models.items():
        for amp in (False, True):
            torch.manual_seed(0)
            model = Seq2Seq.from_config(cfg, tok.src_vocab_size, tok.tgt_vocab_size, PAD)
            opt = make_optimizer(model, 1e-3)
            key = f"{name} {'bf16' if amp else 'fp32'}"
            sides[key] = lambda m=model, o=opt, a=amp: step_split(m, o, batches, a)
            models_of[key] = name
    for fn in sides.values():  # warm-up
        fn()
    runs = {k: [] for k in sides}
    for _ in range(repeats):  # interleaved, as everywhere in this script
        for k, fn in sides.items():
            runs[k].append(fn())
    rows = []
    for key, rs in runs.items():
        acc = accounts[models_of[key]]
        med = {p: statistics.median(r[p] for r in rs) for p in PARTS}
        total = sum(med.values())
        keys = key_flops_per_target_token(models[models_of[key]], src_per_tgt)
        enc, dec = acc["encoder"] - keys, acc["decoder"] + acc["attention"] + keys
        flops = {"encoder fwd": enc / 3, "encoder bwd": 2 * enc / 3,
                 "decoder fwd": dec / 3, "decoder bwd": 2 * dec / 3, "loss fwd+bwd": acc["output"]}
        for p in PARTS:
            f = flops.get(p, 0.0) * tgt_tok
            rows.append({"setting": key, "part": p,
                         "ms/call": f"{1e3 * med[p]:.1f}", "share": f"{100 * med[p] / total:.0f}%",
                         "GFLOP/s": f"{f / med[p] / 1e9:.0f}" if f else "",
                         "% of oneDNN fp32": f"{100 * f / med[p] / peak:.0f}" if f else ""})
        rows.append({"setting": key, "part": "step", "ms/call": f"{1e3 * total:.1f}",
                     "share": "100%", "GFLOP/s": f"{acc['total'] * tgt_tok / total / 1e9:.0f}",
                     "% of oneDNN fp32": f"{100 * acc['total'] * tgt_tok / total / peak:.0f}"})
    return rows


def naive_side(tok, s_ids, t_ids, mcfg, ntok: list):
    """Training calls of :class:`NaiveSeq2Seq` on 4 random batches of 64 (appends to ``ntok``
    the target tokens of each call)."""
    naive = NaiveSeq2Seq(tok.src_vocab_size, tok.tgt_vocab_size, mcfg.embedding_dim, mcfg.hidden_size)
    nopt = torch.optim.Adam(naive.parameters(), 1e-3)
    rng = random.Random(0)
    nbatches = [collate(*zip(*[(s_ids[i], t_ids[i]) for i in b]), b) for b in
                (rng.sample(range(len(s_ids)), 64) for _ in range(4))]

    def naive_step():
        n_all = 0
        for b in nbatches:
            lo = naive(b.src, b.tgt_in, 1.0)
            loss = F.cross_entropy(lo.reshape(-1, lo.size(-1)), b.tgt_out.reshape(-1), ignore_index=PAD)
            nopt.zero_grad()
            loss.backward()
            nopt.step()
            n_all += int((b.tgt_out != PAD).sum())
        ntok.append(n_all)
    return naive_step


def bench_train(args) -> dict:
    """Training steps of the Multi30k recipe's model and of the Joey-shape GRU: the plain torch
    path against the fast one in float32 and in bf16, with the FLOP account of each model."""
    from flop_account import flops_per_target_token, matmul_peaks

    _, (tok, s_ids, t_ids) = bench_data(args, quiet=True)
    data = IdPairs(s_ids, t_ids, [], [])
    mcfg = model_config(args)
    batches = bucket_batches([len(s) for s in s_ids], [len(t) for t in t_ids], 64, seed=1)
    batch_list = list(iterate(data, batches[:4]))  # 4 batches (about 900 target tokens each) a call
    src_tok = sum(int(b.src_len.sum()) for b in batch_list)
    tgt_tok = sum(int((b.tgt_out != PAD).sum()) for b in batch_list)
    src_len = statistics.mean(float(b.src.size(1)) for b in batch_list)
    peaks = matmul_peaks()
    models = {"recipe": mcfg, "joey-gru": joey_shape(mcfg)}
    models = {k: v for k, v in models.items() if k in args.models}
    sides, ntok, setting_model = {}, {}, {}
    for name, cfg in models.items():
        variants = [("plain fp32", dict(fast=False)), ("fast fp32", {}), ("fast bf16", dict(amp=True))]
        if name == "recipe":
            variants += [("fast fp32 tf=0.5", dict(tf=0.5)), ("manual fp32", dict(impl="manual"))]
            variants += [(label, dict(kw)) for label, kw in TWO_PASS_VARIANTS]
        for label, kw in variants:
            impl, feeding = kw.pop("impl", cfg.impl), kw.pop("input_feeding", cfg.input_feeding)
            model, objective = train_model(
                dataclass_replace(cfg, impl=impl, input_feeding=feeding), tok,
                kw.pop("fast", True), kw.pop("two_pass", None))
            key = f"{name} {label}"
            ntok[key] = []
            sides[key] = train_step_fn(objective, make_optimizer(model, 1e-3), batch_list,
                                       ntok=ntok[key], **kw)
            setting_model[key] = name if feeding == cfg.input_feeding else f"{name}-no-feed"
    if "recipe" in models:  # the tutorial way, beside the recipe's model
        sides["recipe naive tf=1.0"] = naive_side(tok, s_ids, t_ids, mcfg,
                                                  ntok.setdefault("recipe naive tf=1.0", []))
        setting_model["recipe naive tf=1.0"] = "naive"  # its own FLOP account (1 layer, untied)
    ts = interleave(sides, args.repeats)
    accounts = {name: flops_per_target_token(cfg, tok.tgt_vocab_size, src_tok / tgt_tok, src_len)
                for name, cfg in models.items()}
    naive_cfg = dataclass_replace(mcfg, num_layers=1, input_feeding=False, attention="luong",
                                  tie_embeddings=False)  # NaiveSeq2Seq's shape, for its FLOPs
    if "recipe" in models:
        accounts["naive"] = flops_per_target_token(naive_cfg, tok.tgt_vocab_size,
                                                   src_tok / tgt_tok, src_len)
        accounts["recipe-no-feed"] = flops_per_target_token(
            dataclass_replace(mcfg, input_feeding=False), tok.tgt_vocab_size, src_tok / tgt_tok,
            src_len)  # one pass's: two passes' GFLOP/s counts the useful FLOPs only
    tps = {k: statistics.mean(ntok[k]) / statistics.median(t) for k, t in ts.items()}
    rows = []
    for k, t in ts.items():
        name = k.split()[0]
        flops = accounts[setting_model[k]]["total"] * tps[k]
        rows.append({"setting": k, "ms/call": f"{1e3 * statistics.median(t):.0f} "
                     f"({1e3 * min(t):.0f}-{1e3 * max(t):.0f})",
                     "target tok/s": int(tps[k]),
                     "vs plain fp32": f"{tps[k] / tps[f'{name} plain fp32']:.2f}x",
                     "GFLOP/s": f"{flops / 1e9:.0f}",
                     "% of oneDNN fp32": f"{100 * flops / peaks['onednn']:.0f}",
                     "% of bf16": f"{100 * flops / peaks['bf16']:.0f}"})
    print(f"per-thread matmul peaks (2048x768 @ 768x2048, best of 20): MKL mm "
          f"{peaks['mkl'] / 1e9:.0f}, oneDNN prepacked fp32 {peaks['onednn'] / 1e9:.0f}, bf16 mm "
          f"{peaks['bf16'] / 1e9:.0f} GFLOP/s")
    for name, acc in accounts.items():
        cfg = {"naive": naive_cfg, "recipe-no-feed": dataclass_replace(
            mcfg, input_feeding=False)}.get(name) or models[name]
        print(f"FLOPs per target token, forward + backward, {name} ({cfg.cell} {cfg.num_layers} x "
              f"{cfg.embedding_dim}/{cfg.hidden_size}, V {tok.tgt_vocab_size}): "
              + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in acc.items()))
    print(f"training calls of 4 Multi30k batches of 64 (bucketed, {tgt_tok} target tokens; naive: "
          f"random), {args.repeats} interleaved repeats; plain = the unfused loss and no oneDNN "
          "kernels (the reference path), fast = the default; bf16 = train.amp: bf16")
    print(table(rows, list(rows[0])))
    two_pass = two_pass_table(ts, ntok) if "recipe" in models else []
    split = split_table(models, accounts, tok, batch_list, tgt_tok, src_tok / tgt_tok,
                        peaks["onednn"], args.repeats)
    print("\nwhere the time goes: the fast path's training calls timed part by part (clock "
          "reads, no profiler; medians of --repeats interleaved calls); FLOPs from the "
          "account above, the attention keys' counted with the decoder, which runs them "
          "(elementwise work, the softmax and Adam are not counted)")
    print(table(split, list(split[0])))
    return {"rows": rows, "peaks_gflops": {k: v / 1e9 for k, v in peaks.items()},
            "flops_per_token": accounts, "split": split, "two_pass": two_pass}


def two_pass_table(ts: dict, ntok: dict) -> list:
    """Two-pass sampling against the stepping loop and teacher forcing, side by side: updates
    and target tokens per second, and each against teacher forcing (the rows of
    :data:`TWO_PASS_VARIANTS`, timed with the others)."""
    keys = [f"recipe {label}" for label, _ in TWO_PASS_VARIANTS]
    steps = {k: 4 / statistics.median(ts[k]) for k in keys}  # 4 batches a call
    forced = keys[0]
    rows = [{"setting": k.replace("recipe no-feed fp32 ", ""),
             "updates/s": f"{steps[k]:.2f}",
             "target tok/s": int(statistics.mean(ntok[k]) / statistics.median(ts[k])),
             "time vs tf=1.0": f"{steps[forced] / steps[k]:.2f}x"} for k in keys]
    print("\ntwo-pass sampling (teacher_forcing.passes: 2) against the stepping loop (passes 1) "
          "and teacher forcing: the recipe's model without input feeding, fast fp32, the same "
          "calls as above")
    print(table(rows, list(rows[0])))
    return rows


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


# -- decode ----------------------------------------------------------------------------------

def bench_decode(args) -> dict:
    src, _, real = multi30k_lines(args.data_dir, "test_2016_flickr", 1000)
    if args.checkpoint:  # a trained model: sentences stop where the model says EOS
        from seq2seq.load import load_model

        model, tok, cfg = load_model(args.checkpoint, device=torch.device("cpu"))
        a, b, what = 1.5, 10, f"the trained model {args.checkpoint}"
    else:  # an untrained model rarely says EOS: cap the length as a trained one would stop
        tok_src, tok_tgt, _ = multi30k_lines(args.data_dir, "train", 29000)
        tok = Tokenizer.train(tok_src, tok_tgt, Config().tokenizer)
        cfg = Config(model=model_config(args))
        model = Seq2Seq.from_config(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, PAD)
        a, b, what = 1.2, 2, "an untrained default model, length capped at 1.2 x source + 2"
    model.eval()
    ids = tok.encode_src(src)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [collate([ids[i] for i in order[k:k + 128]], None, order[k:k + 128])
               for k in range(0, len(order), 128)]
    singles = [collate([ids[i]], None, [i]) for i in range(min(args.singles, len(ids)))]
    engines = {"PyTorch": model}
    engines.update(onnx_engines(model, tok, cfg))

    def run(m, batches, bf16=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return [greedy(m, x.src, x.src_len, a, b) for x in batches]

    sides = {}
    for name, m in engines.items():
        sides[(name, "batched")] = lambda m=m: run(m, batches)
        sides[(name, "single")] = lambda m=m: run(m, singles)
    sides[("PyTorch bf16 autocast", "batched")] = lambda: run(model, batches, True)
    low = bf16_weights(model)  # what --bf16 decodes with: the weights cast once
    sides[("PyTorch --bf16 (bf16 weights)", "batched")] = lambda: run(low, batches, True)
    ts = interleave(sides, args.repeats)
    sps = {k: (len(singles) if k[1] == "single" else len(ids)) / statistics.median(v)
           for k, v in ts.items()}
    rows = []
    for (name, mode), v in sps.items():
        base = sps[("PyTorch", mode)]
        rows.append({"engine": name, "mode": "batched (128)" if mode == "batched" else
                     "one at a time", "sentences/s": round(v, 1),
                     "vs PyTorch": f"{v / base:.2f}x",
                     "vs one at a time": f"{v / sps[(name, 'single')]:.1f}x"
                     if (name, "single") in sps else ""})
    rows.sort(key=lambda r: (r["mode"], list(engines).index(r["engine"])
                             if r["engine"] in engines else 99))
    print(f"greedy decoding of {'test_2016_flickr' if real else 'synthetic'} ({len(ids)} "
          f"sentences batched, the first {len(singles)} one at a time), {what}; "
          f"{torch.get_num_threads()} thread(s), {args.repeats} interleaved repeats, medians")
    print(table(rows, list(rows[0])))
    if "ONNX Runtime float32" in engines:
        print(breakdown(engines, singles, batches[len(batches) // 2], a, b))
    ceiling = decode_ceiling(model, cfg.model, tok.tgt_vocab_size, batches, a, b)
    fp32 = sps[("PyTorch", "batched")]
    print(f"the matrix products of batched greedy decoding: {ceiling['mflop_per_sentence']:.0f} "
          f"MFLOP per sentence (encoder {ceiling['encoder']:.0%}, decoder steps "
          f"{ceiling['decoder']:.0%}, output projection {ceiling['output']:.0%}; counted from "
          f"the shapes and the steps this run took); at the oneDNN fp32 peak "
          f"({ceiling['peak_gflops']:.0f} GFLOP/s) and nothing else, at most "
          f"{ceiling['sentences_per_s']:.0f} sentences/s per thread: float32's "
          f"{fp32:.0f} is {fp32 / ceiling['sentences_per_s']:.0%} of that")
    return {"rows": rows, "ceiling": ceiling,
            "model_bytes": {k: getattr(m, "bytes", None) for k, m in engines.items()}}


def decode_ceiling(model, mcfg, vocab: int, batches, a: float, b: int) -> dict:
    """The forward FLOPs of the matrix products that batched greedy decoding of ``batches``
    does (the encoder over the valid source tokens, every decoder step over the rows still in
    the batch, counted by wrapping ``model.decoder.step``), and the sentences/s they allow at
    the oneDNN fp32 peak: a ceiling no float32 engine on this thread passes."""
    from flop_account import flops_per_target_token

    rows_seen = []
    step = model.decoder.step
    model.decoder.step = lambda y, *rest, **kw: (rows_seen.append(y.size(0)), step(y, *rest, **kw))[1]
    flops = {"encoder": 0.0, "decoder": 0.0, "output": 0.0}
    try:
        with torch.no_grad():
            for x in batches:
                rows_seen.clear()
                greedy(model, x.src, x.src_len, a, b)
                fwd = {k: v / 3 for k, v in flops_per_target_token(
                    mcfg, vocab, 1.0, float(x.src.size(1))).items()}  # forward only
                flops["encoder"] += fwd["encoder"] * float(x.src_len.sum())
                flops["decoder"] += (fwd["decoder"] + fwd["attention"]) * sum(rows_seen)
                flops["output"] += fwd["output"] * sum(rows_seen)
    finally:
        del model.decoder.step  # the instance attribute: the method is back
    total = sum(flops.values())
    n = sum(x.src.size(0) for x in batches)
    peak = onednn_peak() * 1e9
    return {"mflop_per_sentence": total / n / 1e6, "peak_gflops": peak / 1e9,
            "sentences_per_s": n * peak / total, **{k: v / total for k, v in flops.items()}}


def onnx_engines(model, tok, cfg) -> dict:
    """The model exported to ONNX (float32 and int8) in a temporary folder, run by ONNX Runtime;
    none when onnx or onnxruntime is not installed."""
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        print("(onnx/onnxruntime not installed: PyTorch only; pip install 'seq2seq[deploy]')")
        return {}
    import tempfile

    from seq2seq.deploy.export import export_model
    from seq2seq.decoding.onnx_model import OnnxSeq2Seq, file_sizes

    out = {}
    folder = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    for name, int8 in (("ONNX Runtime float32", False), ("ONNX Runtime int8", True)):
        path = folder / ("int8" if int8 else "float32")
        export_model(model, tok, cfg, path, int8=int8, check_sentences=5, log=lambda m: None)
        out[name] = OnnxSeq2Seq(path)
        out[name].bytes = file_sizes(path)["total"]
    model.bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return out


class Timed:
    """A model (PyTorch or exported) seen by the searches, timing its encoder and decoder steps."""

    def __init__(self, model) -> None:
        self.model, self.decoder = model, self
        self.spent = {"encoder": 0.0, "steps": 0.0, "n_steps": 0}

    def _time(self, key, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.spent[key] += time.perf_counter() - t0
        return out

    def encoder(self, src, src_len):
        return self._time("encoder", self.model.encoder, src, src_len)

    def start(self, enc):
        return self.model.decoder.start(enc)

    def projector(self, batch):
        return self.model.decoder.projector(batch)

    def step(self, *args):
        self.spent["n_steps"] += 1
        return self._time("steps", self.model.decoder.step, *args)


def breakdown(engines, singles, batch, a, b) -> str:
    """Where one-at-a-time and batched greedy decoding spend their time, per engine: the
    encoder, the decoder steps (model calls), and the search around them."""
    lines = ["time per sentence (one at a time) and per batch of 128 (the middle batch): "
             "encoder, decoder steps, search (the rest)"]
    for name, m in engines.items():
        for what, xs in (("one at a time", singles), ("batch", [batch])):
            timed = Timed(m)
            t0 = time.perf_counter()
            for x in xs:
                greedy(timed, x.src, x.src_len, a, b)
            total, spent, n = time.perf_counter() - t0, timed.spent, len(xs)
            search = total - spent["encoder"] - spent["steps"]
            lines.append(f"  {name:22s} {what:13s} {1e3 * total / n:7.2f} ms: encoder "
                         f"{1e3 * spent['encoder'] / n:6.2f}, steps {1e3 * spent['steps'] / n:7.2f}"
                         f" ({spent['n_steps'] / n:.1f} steps, "
                         f"{1e6 * spent['steps'] / max(1, spent['n_steps']):.0f} us each), search "
                         f"{1e3 * search / n:6.2f}")
    return "\n".join(lines)


# -- memory ----------------------------------------------------------------------------------

def bench_memory(args) -> dict:
    bench_train(argparse.Namespace(**{**vars(args), "repeats": 3}))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (data + tokenizer + training steps): {rss:.0f} MB")
    return {"peak_rss_mb": rss}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["layer", "train", "decode", "data", "memory", "all"])
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per side")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="layer: wall time, or this thread's CPU time (steadier on a shared "
                        "machine; meaningful with --threads 1 only)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="raw Multi30k files")
    p.add_argument("--checkpoint", type=Path,
                   help="decode: a trained model (e.g. runs/multi30k/best.pt) instead of an "
                        "untrained one")
    p.add_argument("--singles", type=int, default=50,
                   help="decode: sentences decoded one at a time (default: 50)")
    p.add_argument("--models", nargs="+", choices=["recipe", "joey-gru"],
                   default=["recipe", "joey-gru"],
                   help="train: the models to time (default: both; joey-gru alone is a short run)")
    p.add_argument("--json", action="store_true", help="also print one JSON object at the end")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}")
    fns = {"layer": bench_layer, "train": bench_train, "decode": bench_decode,
           "data": lambda a: bench_data(a)[0], "memory": bench_memory}
    out = {"env": env()}
    for name in (fns if args.what == "all" else [args.what]):
        print(f"\n## {name}")
        out[name] = fns[name](args)
    if args.json:
        print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
