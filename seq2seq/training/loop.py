"""The training loop: model, Adam, the teacher-forcing ratio of each step, validation, resume.

    summary = train(cfg, "runs/x")      # or: seq2seq train --config x.yaml --out runs/x

Its kin: data in ``data/corpus.py``, checkpoints and metrics in ``run_folder.py``, autocast
in ``kernels/device.py``, validation in ``validation.py``, the learning rate in ``optim.py``,
processes in ``distributed.py``, Ctrl-C in ``cli/console.py``, where a run starts in ``start.py``.
"""

import contextlib
import signal
import sys
import time
from dataclasses import asdict
from typing import Any, Dict, Optional

import torch
from tqdm import tqdm

from seq2seq.cli import console
from seq2seq.config import Config
from seq2seq.data.corpus import load_corpus
from seq2seq.data.tokenizer import PAD
from seq2seq.kernels.device import mixed_precision, pick_device, resolve_amp, set_threads
from seq2seq.errors import UserError
from seq2seq.model.seq2seq import Seq2Seq

from . import distributed, model_card, sentence_oracle, teacher_forcing
from .ema import WeightAverage
from .loop_state import LoopState, StopReason
from .loss import TokenLosses
from .objective import Objective
from .optim import learning_rate, make_optimizer
from .rng import rng_state, seed_all
from .run_folder import RunFolder
from .start import begin, restore
from .validation import score_key, validate


class Trainer:
    """One training run: corpus, model, optimizer, the loop's state, checkpoints and metrics.

    ``dataset``: a ``datasets.DatasetDict`` to use instead of ``cfg.data``. ``extra_validation``:
    keyword arguments for :func:`seq2seq.training.validation.validate` (e.g.
    ``free_running=True``). ``encoding_errors``: ``strict`` or ``replace`` for data bytes that
    are not UTF-8. ``init_from``: a finished run to start from (:mod:`seq2seq.training.start`).

    The best checkpoint is chosen by :func:`seq2seq.training.validation.score_key`. The
    learning-rate plateau and early stopping only count the scheduled validations (each epoch,
    or every ``eval_every`` steps), not the extra one at the end of a run, so that stopping at
    step k and resuming gives the same model as one run.
    """

    def __init__(self, cfg: Config, out, resume: bool = False, overwrite: bool = False,
                 dataset=None, progress: bool = True, extra_validation=None,
                 encoding_errors: str = "strict", init_from=None) -> None:
        t, started = cfg.train, time.perf_counter()
        self.progress = progress
        self.extra_validation = extra_validation or {}
        self.dist, self.device = distributed.setup(pick_device(t.device))
        d = self.dist
        self.log = console.log if d.main else console.quiet
        self.folder = RunFolder(out, tensorboard=t.tensorboard)
        start = begin(cfg, self.folder, resume, overwrite, init_from, self.log, d)
        self.cfg = cfg = start.cfg  # with --init-from, that checkpoint's tokenizer section
        self.init_from = start.init_from  # where the weights started from, if not here
        set_threads(t.threads)
        seed_all(t.seed)  # the same initial weights in every process
        self.corpus = load_corpus(cfg, start.tokenizer, dataset, encoding_errors, self.log, d)
        self.tok = tok = self.corpus.tokenizer
        self.model = Seq2Seq.from_config(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size,
                                         PAD).to(self.device)
        if start.init is not None:
            self.model.load_state_dict(start.init["model"])
        self.opt = make_optimizer(self.model, t.lr)
        self.ema = WeightAverage(self.model, t.ema_decay) if t.ema_decay else None
        amp = resolve_amp(t.amp, self.device)  # "auto" made bf16 or none, once
        self.autocast, self.scaler = mixed_precision(amp, self.device)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.log(f"model: {Seq2Seq.describe(cfg.model)}, {self.n_params / 1e6:.2f}M "
                 f"parameters, on {self.device}"
                 + (f", {amp} autocast" if amp != "none" else "")
                 + (" (train.amp: auto)" if t.amp == "auto" else ""))
        if d.main:
            self.folder.write_config(cfg)
        self.total_steps = self.corpus.total_steps(d)
        self.log(f"batches: {self.corpus.describe(d)}; {self.total_steps} steps in all"
                 + (f"; {d.world} processes, {t.batch_size} sentences each per step"
                    if d.world > 1 else ""))
        self.st, self.records = LoopState(), []
        if d.rank:  # each process its own dropout masks and teacher-forcing coins
            seed_all(distributed.rank_seed(t.seed, d))
        if start.resumed is not None:
            restore(start.resumed, self.model, self.ema, self.opt, self.st, d.rank)
            self.records = self.folder.records(self.st.step) if d.main else []
            self.log(f"resumed from {start.last} at step {self.st.step}")
        self.started = started - self.st.wall_seconds  # the earlier invocations count too
        self.objective = distributed.wrap(  # what the training step calls (DDP's, or itself)
            Objective.of(cfg, self.model, tok, self.corpus.output_limit), self.device, d)

    def payload(self) -> Dict[str, Any]:
        """What a checkpoint holds; a collective: every process gives its RNG states."""
        rngs = distributed.gather(rng_state(), self.dist)  # rank order, on rank 0
        self.st.wall_seconds = time.perf_counter() - self.started
        weights = {"model": self.model.state_dict()} if self.ema is None else {
            "model": self.ema.state_dict(), "train_weights": self.model.state_dict()}
        return {**weights, "optimizer": self.opt.state_dict(),
                "config": self.folder.stored_config(self.cfg), "tokenizer": self.tok.state(),
                "output_limit": self.corpus.output_limit._asdict(),
                "train_state": asdict(self.st), "rng": rngs,
                **({"init_from": self.init_from} if self.init_from else {})}

    def tf_ratio(self) -> float:
        return teacher_forcing.ratio_for(self.cfg.teacher_forcing, self.st.step, self.st.epoch,
                                         self.total_steps, self.cfg.train.epochs)

    def train_step(self, batch, tf_ratio: float) -> TokenLosses:
        """One update; returns its summed token losses and the number of target tokens."""
        t, tf, opt = self.cfg.train, self.cfg.teacher_forcing, self.opt
        for g in opt.param_groups:
            g["lr"] = learning_rate(t, self.st.step, self.total_steps, self.st.plateau_factor)
        batch = batch.to(self.device)
        with self.autocast():
            losses = self.objective(batch.src, batch.src_len, batch.tgt_in, batch.tgt_out,
                                    tf_ratio, tf.feed, tf.scope, tf.temperature)
        # per token of the global batch: DDP averages over ranks, so scale by the world size
        n_global = distributed.all_sum(losses.n, self.dist)
        loss = losses.objective * (self.dist.world / max(1.0, n_global))
        if distributed.any_true(not bool(torch.isfinite(loss)), self.dist):
            kept = (f"the last good checkpoint is {self.folder.last} (step "
                    f"{self.records[-1]['step'] if self.records else '?'})"
                    if self.folder.last.is_file() else "no checkpoint was saved yet")
            value = loss.item() if not torch.isfinite(loss) else "not finite on another process"
            raise UserError(f"the training loss is {value} at step {self.st.step + 1}: "
                            f"stopped; {kept}. Try a lower train.lr or train.clip_norm")
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.clip_norm:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.scaler.step(opt)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.st.step)
        return losses

    def validate_and_save(self, scheduled: bool = True) -> bool:
        """Validate, log, save last/best (rank 0); True when early stopping says stop.

        ``scheduled=False`` (the extra validation at the end of a run) leaves the plateau
        schedule and early stopping alone, and its checkpoint takes the place of the last
        ``step-N.pt`` (a few steps after it, it would count twice in an average). Every process
        takes part (the training window is summed over them, the RNG states gathered); the
        others then receive rank 0's loop state.
        """
        t, st, d = self.cfg.train, self.st, self.dist
        self._sum_window()
        improved = self._validate(scheduled) if d.main else False
        payload = self.payload()  # after validating: what a resumed run starts from
        if d.main:
            self.folder.save(payload, st.step, improved, t.keep_last, replace_last=not scheduled)
            self.folder.plot(self.records)
        stop = bool(t.patience) and st.bad_evals >= t.patience
        if d.world > 1:
            state, stop = distributed.broadcast((asdict(st), stop), d)
            st.update(state)
        return stop

    def _sum_window(self) -> None:
        """The training window of every process, summed, on rank 0 (a collective)."""
        st, d = self.st, self.dist
        for k in ("window_nll", "window_objective", "window_risk", "window_tokens"):
            setattr(st, k, type(getattr(st, k))(distributed.all_sum(getattr(st, k), d)))
            if d.rank:
                setattr(st, k, type(getattr(st, k))(0))

    def _validate(self, scheduled: bool) -> bool:
        """Rank 0: validate, record, count for the plateau and early stopping; improved?"""
        t, st = self.cfg.train, self.st
        tf_ratio = self.tf_ratio() if st.tf_ratio is None else st.tf_ratio
        n = max(1, st.window_tokens)
        rec = {"step": st.step, "epoch": st.epoch, "tf_ratio": round(tf_ratio, 4),
               "lr": self.opt.param_groups[0]["lr"], "train_loss": st.window_nll / n,
               "train_objective": st.window_objective / n,
               **({"train_mrt_risk": st.window_risk / n} if t.objective == "mrt" else {}),
               "tokens_per_s": st.window_tokens / max(1e-9, st.window_seconds),
               "train_seconds": round(st.train_seconds, 1),
               **sentence_oracle.oracle_cost(self.objective, st.window_seconds)}
        st.clear_window()
        improved = True
        if self.corpus.valid is not None:
            with self.ema.applied() if self.ema is not None else contextlib.nullcontext():
                rec.update(validate(self.model, self.corpus.valid, self.tok, self.cfg,
                                    self.device, self.corpus.output_limit,
                                    examples=self.folder.examples, **self.extra_validation))
            key = score_key(rec)
            improved = key > st.best_key
            if improved:
                st.best_key = key
            if scheduled and key > st.sched_best:
                st.sched_best, st.bad_evals = key, 0
            elif scheduled:
                st.bad_evals += 1
                if t.lr_schedule == "plateau":
                    st.plateau_factor *= t.lr_decay
            self.log(f"step {st.step}: valid loss {rec['valid_loss']:.3f} ppl "
                     f"{rec['valid_ppl']:.2f} BLEU {rec['valid_bleu']:.2f} chrF "
                     f"{rec['valid_chrf']:.2f} (tf {tf_ratio:.2f}"
                     f"{sentence_oracle.oracle_note(rec)})"
                     + (f"\n{rec['valid_warning']}" if "valid_warning" in rec else ""))
        self.records.append(rec)
        self.folder.append(rec, rec.pop("examples", None))
        return improved

    def _step_and_check(self, batch, sig, bar) -> Optional[StopReason]:
        """Train on one batch, validate when it is time; why to stop now, if so."""
        t, st, d = self.cfg.train, self.st, self.dist
        t0 = time.perf_counter()
        st.tf_ratio = self.tf_ratio()
        losses = self.train_step(batch, st.tf_ratio)
        dt = time.perf_counter() - t0
        st.step, st.batch, st.train_seconds = st.step + 1, st.batch + 1, st.train_seconds + dt
        st.window_nll += losses.nll
        st.window_objective += float(losses.objective.detach())
        st.window_risk += losses.risk
        st.window_tokens += losses.n
        st.window_seconds += dt
        bar.update(1)
        bar.set_postfix(loss=f"{losses.nll / max(1, losses.n):.3f}",
                        tok_s=f"{losses.n / dt:.0f}", tf=f"{st.tf_ratio:.2f}", refresh=False)
        if t.eval_every and st.step % t.eval_every == 0 and self.validate_and_save():
            return StopReason.EARLY_STOPPING
        if distributed.any_true(sig.signal is not None, d):
            return StopReason.SIGNAL
        if t.max_minutes and distributed.any_true(
                d.main and st.train_seconds >= 60 * t.max_minutes, d):
            return StopReason.TIME
        return None

    def run(self) -> Dict[str, Any]:
        """The loop: epochs of bucketed batches until the step, epoch or time budget is spent."""
        t, st, d = self.cfg.train, self.st, self.dist
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=st.step, desc="train", unit="step",
                   disable=not (self.progress and d.main), dynamic_ncols=True, mininterval=0.5,
                   file=sys.stderr)
        with console.StopSignal(self.log) as sig:
            reason = st.stopped(t)  # a resumed run that had stopped takes no more steps
            with bar:
                while reason is None and st.step < self.total_steps and st.epoch < t.epochs:
                    for batch in self.corpus.epoch(st.epoch, d, start=st.batch):
                        reason = self._step_and_check(batch, sig, bar)
                        if reason or st.step >= self.total_steps:
                            break
                    else:
                        st.epoch, st.batch = st.epoch + 1, 0
                        if not t.eval_every and self.validate_and_save():
                            reason = StopReason.EARLY_STOPPING
            signum = signal.Signals(sig.signal or signal.SIGTERM)
            if reason is StopReason.SIGNAL:
                self._sum_window()
                payload = self.payload()
                if d.main:
                    self.folder.save(payload, st.step, best=False, keep_last=0)
                self.log(f"stopped by {signum.name} at step {st.step}; checkpoint saved to "
                         f"{self.folder.last}; continue with --resume")
            elif distributed.broadcast(not self.records or self.records[-1]["step"] != st.step,
                                       d):
                self.validate_and_save(scheduled=False)
        if d.main:
            self.folder.finish(self.records)
        self.objective = getattr(self.objective, "module", self.objective)  # DDP's reducer goes
        distributed.cleanup(d)  # before the process group it talks to
        if reason in (StopReason.TIME, StopReason.EARLY_STOPPING):
            self.log(f"{reason.value} (train.max_minutes={t.max_minutes}, train.patience="
                     f"{t.patience}): stopped at step {st.step} after "
                     f"{st.train_seconds / 60:.1f} minutes of training")
        best = max((r for r in self.records if "valid_bleu" in r), key=score_key,
                   default=self.records[-1] if self.records else {})
        per_epoch = self.corpus.steps_per_epoch(d)  # epochs as a fraction: ended mid-epoch
        epochs = st.epoch + (st.batch / per_epoch if per_epoch else 0)
        return {"steps": st.step, "epochs": round(epochs, 3), "train_seconds": st.train_seconds,
                "best": best, "interrupted": reason is StopReason.SIGNAL,
                "signal": int(signum) if reason is StopReason.SIGNAL else None,
                "stopped_by": (reason or StopReason.BUDGET).value,
                "wall_seconds": round(time.perf_counter() - self.started, 1),
                "out": str(self.folder.path), "parameters": self.n_params,
                "init_from": self.init_from}


def train(cfg: Config, out, resume: bool = False, overwrite: bool = False, dataset=None,
          progress: bool = True, extra_validation=None, encoding_errors: str = "strict",
          init_from=None) -> Dict[str, Any]:
    """Train a model as configured (see :class:`Trainer`); the run's summary (steps, epochs,
    seconds, best validation record, parameters), also in summary.json and README.md."""
    trainer = Trainer(cfg, out, resume, overwrite, dataset, progress, extra_validation,
                      encoding_errors, init_from)
    return model_card.after_training(trainer.run(), trainer.corpus, trainer.dist.main)
