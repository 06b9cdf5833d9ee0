"""The training loop: data and tokenizer, model, Adam, validation, checkpoints, resume.

    summary = train(cfg, "runs/x")      # or: seq2seq train --config x.yaml --out runs/x

Writes to the run folder: ``last.pt`` and ``best.pt`` (atomic), ``config.yaml``,
``metrics.jsonl`` (one record per validation) and ``curves.png``.
"""

import dataclasses
import json
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from tqdm import tqdm

from . import checkpoint, distributed, teacher_forcing
from .config import Config, to_yaml
from .data import (Batch, IdPairs, bucket_batches, encode_pairs, filter_length, iterate,
                   load_splits, padding_fraction)
from .decode import greedy
from .errors import UserError
from .evaluate import score
from .loss import masked_cross_entropy
from .model import Seq2Seq
from .stream import StreamingData
from .tokenizer import PAD, Tokenizer


_QUIET = {"on": False}  # set on the ranks other than 0 of a distributed run


def log(msg: str) -> None:
    if not _QUIET["on"]:
        tqdm.write(msg, file=sys.stderr)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device cuda requested but torch sees no GPU (use --device cpu)")
    return torch.device(name)


def learning_rate(cfg, step: int, total: int, plateau_factor: float) -> float:
    """Linear warm-up, then constant / cosine decay, times the plateau factor."""
    lr = cfg.lr * plateau_factor
    if cfg.warmup_steps and step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))
    return lr


def make_optimizer(model, lr: float) -> torch.optim.Optimizer:
    try:  # the fused kernel is 4x faster on CPU (torch >= 2.4)
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def mixed_precision(amp: str, device: torch.device):
    """``(autocast context factory, grad scaler)`` for ``train.amp`` (none | bf16 | fp16)."""
    if amp == "fp16" and device.type != "cuda":
        raise UserError("train.amp=fp16 needs a CUDA device; use bf16 on a CPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    autocast = lambda: torch.autocast(device.type, dtype=dtype or torch.float32,
                                      enabled=dtype is not None)
    return autocast, torch.amp.GradScaler(device.type, enabled=amp == "fp16")


class Data:
    """The encoded splits of a run and its tokenizer."""

    def __init__(self, cfg: Config, tokenizer: Optional[Tokenizer], dataset=None,
                 encoding_errors: str = "strict") -> None:
        d = cfg.data
        splits = [s for s in (d.train_split, d.valid_split) if s]
        t0 = time.time()
        raw = load_splits(d, splits, dataset, encoding_errors)
        if not raw[d.train_split][0]:
            raise UserError(f"the training split {d.train_split!r} is empty")
        self.tokenizer = tokenizer or Tokenizer.train(*raw[d.train_split], cfg.tokenizer)
        train, dropped = filter_length(encode_pairs(self.tokenizer, raw[d.train_split]), d.max_len)
        if not train.src:
            raise UserError(f"no training pair is left after the length filter "
                            f"(data.max_len={d.max_len}, {dropped} dropped)")
        self.train = train
        self.valid = encode_pairs(self.tokenizer, raw[d.valid_split]) if d.valid_split else None
        log(f"data: {len(train.src)} training pairs ({dropped} dropped: empty or longer than "
            f"data.max_len={d.max_len} pieces), "
            f"{len(self.valid.src) if self.valid else 0} validation pairs; vocab "
            f"{self.tokenizer.src_vocab_size}/{self.tokenizer.tgt_vocab_size}; "
            f"{time.time() - t0:.1f} s")

    def train_batches(self, cfg, epoch: int, d: distributed.Dist = distributed.Dist()
                      ) -> List[List[int]]:
        """This epoch's batches (this rank's shards of the global batches when distributed)."""
        t = cfg.train
        global_batches = bucket_batches(
            [len(s) for s in self.train.src], [len(s) for s in self.train.tgt],
            t.batch_size * d.world, t.batch_tokens and t.batch_tokens * d.world,
            seed=t.seed * 100003 + epoch)
        return distributed.shard(global_batches, d)

    def steps_per_epoch(self, cfg, d: distributed.Dist = distributed.Dist()) -> Optional[int]:
        return len(self.train_batches(cfg, 0, d))

    def epoch(self, cfg, epoch: int, d: distributed.Dist = distributed.Dist(), start: int = 0
              ) -> Iterator[Batch]:
        """This epoch's batches from batch ``start`` (where a resumed run left off)."""
        return iterate(self.train, self.train_batches(cfg, epoch, d)[start:])


def load_data(cfg: Config, tokenizer: Optional[Tokenizer], dataset=None,
              encoding_errors: str = "strict"):
    """The run's data: in memory (:class:`Data`), or streamed (``data.streaming``)."""
    if cfg.data.streaming:
        return StreamingData(cfg, tokenizer, dataset, encoding_errors, log=log)
    return Data(cfg, tokenizer, dataset, encoding_errors)


@torch.no_grad()
def validate(model, data: IdPairs, tok: Tokenizer, cfg: Config, device,
             free_running: bool = False) -> Dict[str, Any]:
    """Teacher-forced loss and perplexity; greedy BLEU, chrF and exact match on the first
    ``train.valid_max_sentences``; with ``free_running``, also the loss when the decoder is
    fed its own argmax predictions (``tf_ratio=0``): the gap between the two is exposure bias.
    """
    was_training = model.training
    model.eval()
    batches = bucket_batches([len(s) for s in data.src], [len(s) for s in data.tgt],
                             cfg.decode.batch_size)
    loss_tf = loss_free = 0.0
    n_tok = 0
    for batch in iterate(data, batches):
        batch = batch.to(device)
        loss, n = masked_cross_entropy(model(batch.src, batch.src_len, batch.tgt_in, 1.0),
                                       batch.tgt_out, PAD)
        loss_tf += float(loss)
        n_tok += n
        if free_running:
            logits = model(batch.src, batch.src_len, batch.tgt_in, 0.0)
            loss_free += float(masked_cross_entropy(logits, batch.tgt_out, PAD)[0])
    sub = IdPairs(*(x[:cfg.train.valid_max_sentences] for x in data))
    hyps = tok.decode_tgt(decode_ids(model, sub, cfg, device))
    s = score(hyps, sub.tgt_text)
    model.train(was_training)
    out = {"valid_loss": loss_tf / max(1, n_tok),
           "valid_ppl": math.exp(min(50.0, loss_tf / max(1, n_tok))),
           "valid_bleu": s["bleu"], "valid_chrf": s["chrf"], "valid_exact_match": s["exact_match"]}
    if free_running:
        out["valid_loss_free"] = loss_free / max(1, n_tok)
    return out


def decode_ids(model, data: IdPairs, cfg: Config, device) -> List[List[int]]:
    """Greedy ids for every source of ``data``, in order."""
    lens = [len(s) for s in data.src]
    out: List[List[int]] = [[] for _ in lens]
    for batch in iterate(data, bucket_batches(lens, lens, cfg.decode.batch_size), False):
        batch = batch.to(device)
        hyps, _ = greedy(model, batch.src, batch.src_len, cfg.decode.max_len_a,
                         cfg.decode.max_len_b)
        for i, h in zip(batch.index.tolist(), hyps):
            out[i] = h
    return out


def _score_key(rec: Dict[str, Any]) -> List[float]:
    """What "better" means for validations: BLEU, then chrF, then a lower loss."""
    return [rec["valid_bleu"], rec["valid_chrf"], -rec["valid_loss"]]


def rng_state() -> Dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: Dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class _Stop:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the end of the step and exits."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum
        log(f"\n{signal.Signals(signum).name}: saving a checkpoint at the end of this step ...")

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def plot_curves(records: List[Dict[str, Any]], path: Path) -> None:
    """Training and validation loss, and validation BLEU, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return
    steps = [r["step"] for r in records]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(steps, [r["train_loss"] for r in records], label="train (as trained)")
    if "valid_loss" in records[-1]:  # no validation split: training curves only
        a.plot(steps, [r.get("valid_loss") for r in records], label="validation (teacher-forced)")
        b.plot(steps, [r.get("valid_bleu") for r in records], color="tab:green", marker=".")
    a.set_xlabel("step"), a.set_ylabel("loss per token"), a.legend()
    b.set_xlabel("step"), b.set_ylabel("validation BLEU (greedy)")
    if "tf_ratio" in records[0]:
        c = b.twinx()
        c.plot(steps, [r["tf_ratio"] for r in records], color="tab:gray", ls="--")
        c.set_ylabel("teacher-forcing ratio", color="tab:gray"), c.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def prepare_out(out: Path, resume: bool, overwrite: bool) -> Optional[Path]:
    """Check the run folder; return the checkpoint to resume from, if any."""
    last = out / "last.pt"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir():  # temporary files of a save that was killed (see checkpoint.save)
        for tmp in out.glob(".*.pt.*.tmp"):
            tmp.unlink(missing_ok=True)
    run_files = ["last.pt", "best.pt", "metrics.jsonl", "curves.png"]
    held = [n for n in run_files if (out / n).exists()] + sorted(p.name for p in
                                                                out.glob("step-*.pt"))
    if resume:
        if last.is_file():
            return last
        if held:
            raise UserError(f"--resume: {out} has no last.pt to resume from (it holds "
                            f"{', '.join(held)}); use --overwrite to start again")
        log(f"--resume: no checkpoint in {out} yet, starting a new run")
    elif held:
        if not overwrite:
            raise UserError(f"--out {out} already holds a run ({', '.join(held)}); use --resume "
                            "to continue it or --overwrite to start again")
        for name in held:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return None


class Trainer:
    """One training run: data, model, optimizer, the loop's state, checkpoints and metrics.

    ``dataset``: a ``datasets.DatasetDict`` to use instead of ``cfg.data``. ``extra_validation``:
    keyword arguments for :func:`validate` (e.g. ``free_running=True``). ``encoding_errors``:
    ``strict`` or ``replace`` for data bytes that are not UTF-8.

    The best checkpoint is chosen by validation BLEU, ties broken by chrF and then by the
    validation loss (short toy outputs all score BLEU 0). The learning-rate plateau and early
    stopping only count the scheduled validations (each epoch, or every ``eval_every`` steps),
    not the extra one at the end of a run, so that stopping at step k and resuming gives the
    same model as one run.
    """

    def __init__(self, cfg: Config, out, resume: bool = False, overwrite: bool = False,
                 dataset=None, progress: bool = True, extra_validation=None,
                 encoding_errors: str = "strict") -> None:
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.extra_validation = extra_validation or {}
        t = cfg.train
        self.device = pick_device(t.device)
        self.dist = d = distributed.setup(self.device.type)
        _QUIET["on"] = not d.main
        if d.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", d.local_rank)
        # rank 0 checks and prepares the run folder; the broadcast makes the others wait for it
        start_ckpt = distributed.on_main(lambda: prepare_out(self.out, resume, overwrite), d)
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        random.seed(t.seed)
        ckpt = checkpoint.load(start_ckpt) if start_ckpt else None
        if ckpt is not None and ckpt["config"]["model"] != dataclasses.asdict(cfg.model):
            raise UserError(f"--resume: the model section of the config differs from the one in "
                            f"{start_ckpt}; resume with the same model settings")
        if ckpt is not None and not all(k in ckpt for k in ("optimizer", "train_state", "rng")):
            raise UserError(f"--resume: {start_ckpt} holds no training state (optimizer, step, "
                            "RNG; an averaged checkpoint?), so it cannot be resumed")
        tok = Tokenizer.from_state(ckpt["tokenizer"]) if ckpt else None
        main_data = []  # one tokenizer for all ranks: rank 0's
        tok_state = distributed.on_main(
            lambda: main_data.append(load_data(cfg, tok, dataset, encoding_errors))
            or main_data[0].tokenizer.state(), d)
        self.data = main_data[0] if main_data else load_data(
            cfg, Tokenizer.from_state(tok_state), dataset, encoding_errors)
        self.tok = tok = self.data.tokenizer
        self.model = Seq2Seq.from_config(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size,
                                         PAD).to(self.device)
        self.ddp = self.model  # what the training step calls
        self.opt = make_optimizer(self.model, t.lr)
        self.autocast, self.scaler = mixed_precision(t.amp, self.device)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        log(f"model: {cfg.model.cell} {cfg.model.impl}, attention {cfg.model.attention}, "
            f"{self.n_params / 1e6:.2f}M parameters, on {self.device}")
        if d.main:
            (self.out / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")

        steps_per_epoch = self.data.steps_per_epoch(cfg, d)
        if steps_per_epoch is None:  # streamed: unknown until the stream has been read
            if not t.max_steps:
                raise UserError("data.streaming: the number of batches per epoch is not known "
                                "in advance; set train.max_steps")
            self.total_steps = t.max_steps
            what = f"bucketed per chunk of {cfg.data.chunk_size} pairs"
        else:
            self.total_steps = min(t.max_steps or 10**12, t.epochs * steps_per_epoch)
            pf = padding_fraction([len(s) + 1 for s in self.data.train.tgt],
                                  self.data.train_batches(cfg, 0, d))
            what = f"{steps_per_epoch} per epoch, target padding {100 * pf:.1f}%"
        self.tf_total = self.total_steps if cfg.teacher_forcing.unit == "step" else t.epochs
        log(f"batches: {what}; {self.total_steps} steps in all"
            + (f"; {d.world} processes, {t.batch_size} sentences each per step"
               if d.world > 1 else ""))

        no_score = [-1.0, -1.0, -math.inf]  # (BLEU, chrF, -loss) of no validation yet
        self.st = {"step": 0, "epoch": 0, "batch": 0, "best_bleu": -1.0, "best_key": no_score,
                   "sched_best": no_score, "bad_evals": 0, "plateau_factor": 1.0,
                   "train_seconds": 0.0}
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.st.update(ckpt["train_state"])
            set_rng_state(ckpt["rng"])
            log(f"resumed from {start_ckpt} at step {self.st['step']}")
        if d.world > 1:  # gradients averaged across ranks by DDP
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        self.metrics_path = self.out / "metrics.jsonl"
        records = [json.loads(l) for l in self.metrics_path.read_text().splitlines()] \
            if ckpt is not None and d.main and self.metrics_path.exists() else []
        self.records = [r for r in records if r["step"] <= self.st["step"]]
        if ckpt is not None and d.main:  # drop records written after the checkpoint (a kill)
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in self.records),
                                         encoding="utf-8")
        self.window = {"loss": 0.0, "tokens": 0, "time": 0.0}  # since the last validation
        self.plotted = time.time()  # when curves.png was last drawn (and once more at the end)

    def payload(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "config": self.cfg.to_dict(), "tokenizer": self.tok.state(),
                "train_state": dict(self.st), "rng": rng_state()}

    def train_step(self, batch, tf_ratio: float) -> Tuple[float, int]:
        """One update; returns the summed token loss and the number of target tokens."""
        t, st, opt = self.cfg.train, self.st, self.opt
        for g in opt.param_groups:
            g["lr"] = learning_rate(t, st["step"], self.total_steps, st["plateau_factor"])
        batch = batch.to(self.device)
        with self.autocast():
            logits = self.ddp(batch.src, batch.src_len, batch.tgt_in, tf_ratio,
                              self.cfg.teacher_forcing.feed)  # (B, T, V)
        loss_sum, n = masked_cross_entropy(logits, batch.tgt_out, PAD, t.label_smoothing)
        # per token of the global batch: DDP averages over ranks, so scale by the world size
        n_global = distributed.all_sum(n, self.dist)
        loss = loss_sum * (self.dist.world / max(1.0, n_global))
        if distributed.any_true(not bool(torch.isfinite(loss)), self.dist):
            kept = (f"the last good checkpoint is {self.out / 'last.pt'} (step "
                    f"{self.records[-1]['step'] if self.records else '?'})"
                    if (self.out / "last.pt").is_file() else "no checkpoint was saved yet")
            value = loss.item() if not torch.isfinite(loss) else "not finite on another process"
            raise UserError(f"the training loss is {value} at step {st['step'] + 1}: "
                            f"stopped; {kept}. Try a lower train.lr or train.clip_norm")
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.clip_norm:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.scaler.step(opt)
        self.scaler.update()
        return float(loss_sum.detach()), n

    def validate_and_save(self, tf_ratio: float, scheduled: bool = True) -> bool:
        """Validate, log, save last/best (rank 0); True when early stopping says stop.

        ``scheduled=False`` (the extra validation at the end of a run) leaves the plateau
        schedule and early stopping alone. Other ranks receive rank 0's loop state.
        """
        stop = self._validate_and_save(tf_ratio, scheduled) if self.dist.main else False
        if self.dist.world > 1:
            self.st, stop = distributed.broadcast((self.st, stop), self.dist)
            self.window.update(loss=0.0, tokens=0, time=0.0)
        return stop

    def _validate_and_save(self, tf_ratio: float, scheduled: bool) -> bool:
        t, st, window = self.cfg.train, self.st, self.window
        rec = {"step": st["step"], "epoch": st["epoch"], "tf_ratio": round(tf_ratio, 4),
               "lr": self.opt.param_groups[0]["lr"],
               "train_loss": window["loss"] / max(1, window["tokens"]),
               "tokens_per_s": window["tokens"] / max(1e-9, window["time"]),
               "train_seconds": round(st["train_seconds"], 1)}
        window.update(loss=0.0, tokens=0, time=0.0)
        improved = True
        if self.data.valid is not None:
            rec.update(validate(self.model, self.data.valid, self.tok, self.cfg, self.device,
                                **self.extra_validation))
            key = _score_key(rec)
            improved = key > st["best_key"]
            if improved:
                st["best_key"], st["best_bleu"] = key, rec["valid_bleu"]
            if scheduled and key > st["sched_best"]:
                st["sched_best"], st["bad_evals"] = key, 0
            elif scheduled:
                st["bad_evals"] += 1
                if t.lr_schedule == "plateau":
                    st["plateau_factor"] *= t.lr_decay
            log(f"step {st['step']}: valid loss {rec['valid_loss']:.3f} ppl "
                f"{rec['valid_ppl']:.2f} BLEU {rec['valid_bleu']:.2f} chrF "
                f"{rec['valid_chrf']:.2f} (tf {tf_ratio:.2f})")
        self.records.append(rec)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        payload = self.payload()
        checkpoint.save(payload, self.out / "last.pt")
        if improved:
            checkpoint.save(payload, self.out / "best.pt")
        if t.keep_last:
            checkpoint.save(payload, self.out / f"step-{st['step']}.pt")
            kept = sorted(self.out.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
            for old in kept[:-t.keep_last]:
                old.unlink()
        if time.time() - self.plotted > 60:  # drawing takes a while: at most once a minute
            plot_curves(self.records, self.out / "curves.png")
            self.plotted = time.time()
        return bool(t.patience) and st["bad_evals"] >= t.patience

    def run(self) -> Dict[str, Any]:
        """The loop: epochs of bucketed batches until the step, epoch or time budget is spent."""
        cfg, t, st = self.cfg, self.cfg.train, self.st
        self.model.train()
        stopped_by = None
        tf_ratio = teacher_forcing.ratio_at(cfg.teacher_forcing, 0, self.tf_total)
        d = self.dist
        bar = tqdm(total=self.total_steps, initial=st["step"], desc="train", unit="step",
                   disable=not (self.progress and d.main), dynamic_ncols=True, mininterval=0.5,
                   file=sys.stderr)
        with _Stop() as stop:
            while st["step"] < self.total_steps and st["epoch"] < t.epochs and stopped_by is None:
                for batch in self.data.epoch(cfg, st["epoch"], d, start=st["batch"]):
                    t0 = time.perf_counter()
                    unit_i = st["step"] if cfg.teacher_forcing.unit == "step" else st["epoch"]
                    tf_ratio = teacher_forcing.ratio_at(cfg.teacher_forcing, unit_i, self.tf_total)
                    try:
                        loss_sum, n = self.train_step(batch, tf_ratio)
                    except UserError:
                        bar.close()
                        raise
                    dt = time.perf_counter() - t0
                    st["step"] += 1
                    st["batch"] += 1
                    st["train_seconds"] += dt
                    self.window["loss"] += loss_sum
                    self.window["tokens"] += n
                    self.window["time"] += dt
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / max(1, n):.3f}", tok_s=f"{n / dt:.0f}",
                                    tf=f"{tf_ratio:.2f}", refresh=False)
                    if t.eval_every and st["step"] % t.eval_every == 0:
                        if self.validate_and_save(tf_ratio):
                            stopped_by = "early stopping"
                        st = self.st
                    if distributed.any_true(stop.signal is not None, d):
                        stopped_by = signal.Signals(stop.signal or signal.SIGTERM).name
                    elif t.max_minutes and distributed.any_true(
                            d.main and st["train_seconds"] >= 60 * t.max_minutes, d):
                        stopped_by = "time budget"
                    if st["step"] >= self.total_steps or stopped_by:
                        break
                else:
                    st["epoch"] += 1
                    st["batch"] = 0
                    if not t.eval_every and self.validate_and_save(tf_ratio):
                        stopped_by = "early stopping"
                    st = self.st
            bar.close()
            interrupted = bool(stopped_by and stopped_by.startswith("SIG"))
            if interrupted:
                if d.main:
                    checkpoint.save(self.payload(), self.out / "last.pt")
                log(f"stopped by {stopped_by} at step {st['step']}; checkpoint saved to "
                    f"{self.out / 'last.pt'}; continue with --resume")
            elif distributed.broadcast(not self.records or
                                       self.records[-1]["step"] != st["step"], d):
                self.validate_and_save(tf_ratio, scheduled=False)
        if self.records and d.main:
            plot_curves(self.records, self.out / "curves.png")
        self.ddp = self.model  # DDP's reducer goes before the process group it talks to
        distributed.cleanup(d)
        if stopped_by == "time budget":
            log(f"time budget: stopped after {st['train_seconds'] / 60:.1f} minutes of training "
                f"(train.max_minutes={t.max_minutes}) at step {st['step']}")
        if stopped_by == "early stopping":
            log(f"early stopping at step {st['step']}: no BLEU gain in {t.patience} validations")
        best = max((r for r in self.records if "valid_bleu" in r), key=_score_key,
                   default=self.records[-1] if self.records else {})
        return {"steps": st["step"], "epochs": st["epoch"], "train_seconds": st["train_seconds"],
                "best": best, "interrupted": interrupted, "out": str(self.out),
                "parameters": self.n_params}


def train(cfg: Config, out, resume: bool = False, overwrite: bool = False, dataset=None,
          progress: bool = True, extra_validation=None, encoding_errors: str = "strict"
          ) -> Dict[str, Any]:
    """Train a model as configured (see :class:`Trainer`); returns a summary of the run
    (steps, epochs, training seconds, the best validation record, parameters)."""
    return Trainer(cfg, out, resume, overwrite, dataset, progress, extra_validation,
                   encoding_errors).run()
