"""The comparison's data, and one run: train, decode the test split, score (with the
hallucination rate of every scored set, greedy), diagnose."""

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import yaml

from seq2seq.cli.console import log
from seq2seq.data.readers import load_splits
from seq2seq.data.toy import TASKS
from seq2seq.data.toy import dataset as toy_dataset
from seq2seq.decoding.evaluate import evaluate_lines, evaluate_model, read_split, score
from seq2seq.decoding.hallucination import evaluation_flagged, evaluation_report
from seq2seq.kernels.device import pick_device
from seq2seq.errors import UserError
from seq2seq.load import load_model
from seq2seq.training.loop import train
from seq2seq.training.validation import validate

from .injection import POSITIONS, REFERENCE, probe
from .oracle import measure
from .pooled import hyp_file


def load_data(cfg, config_path: str, toy: Optional[str], data_seed: int):
    """The data of every run, as a ``datasets.DatasetDict`` (loaded or generated once): a toy
    task's for a config without ``data.path`` (``toy``, or the config's file name)."""
    from datasets import Dataset, DatasetDict

    if cfg.data.path is None:
        task = toy or Path(config_path).stem
        if task not in TASKS:
            raise UserError(f"{config_path} sets no data.path and is not a toy recipe "
                            f"({', '.join(TASKS)}): set data.path (see --help), or --toy")
        return toy_dataset(task, data_seed)
    if toy:
        raise UserError(f"--toy {toy}: {config_path} reads its data from data.path "
                        f"{cfg.data.path!r}; drop --toy or use a toy recipe's config")
    d = cfg.data
    splits = [s for s in dict.fromkeys((d.train_split, d.valid_split, d.test_split)) if s]
    pairs = load_splits(d, splits)
    return DatasetDict({s: Dataset.from_dict({d.src: src, d.tgt: tgt})
                        for s, (src, tgt) in pairs.items()})


def length_buckets(lengths: Sequence[int], n: int) -> List[tuple]:
    """Up to ``n`` buckets ``(lo, hi)`` of near-equal size that cover ``lengths``."""
    xs = sorted(lengths)
    if not xs:
        return []
    his = sorted({xs[max(0, math.ceil(len(xs) * q / n) - 1)] for q in range(1, n + 1)})
    los = [xs[0]] + [h + 1 for h in his[:-1]]
    return list(zip(los, his))


def bucket_label(b: tuple) -> str:
    return f"{b[0]}" if b[0] == b[1] else f"{b[0]}-{b[1]}"


def position_accuracy(model, data, batch_size: int, device) -> Dict[str, List[int]]:
    """Per target position (EOS included): how many references reach it, and how many tokens
    the model gets right there when teacher-forced and when free-running (greedy: fed its own
    argmax, run for the reference's length)."""
    import torch

    from seq2seq.data.batching import bucket_batches, iterate
    from seq2seq.data.tokenizer import PAD

    T = max(len(t) for t in data.tgt) + 1
    n = torch.zeros(T, dtype=torch.long)  # references that reach each position
    tf = torch.zeros(T, dtype=torch.long)  # right tokens, teacher-forced
    free = torch.zeros(T, dtype=torch.long)  # right tokens, free-running
    model.eval()
    lens = [len(s) for s in data.src]
    with torch.no_grad():
        for batch in iterate(data, bucket_batches(lens, [len(t) for t in data.tgt], batch_size)):
            batch = batch.to(device)
            mask = batch.tgt_out != PAD  # (B, T_b)
            L = mask.size(1)
            n[:L] += mask.sum(0).cpu()
            for ratio, acc in ((1.0, tf), (0.0, free)):
                pred = model(batch.src, batch.src_len, batch.tgt_in, ratio).argmax(-1)  # (B, T_b)
                acc[:L] += ((pred == batch.tgt_out) & mask).sum(0).cpu()
    return {"n": n.tolist(), "correct_tf": tf.tolist(), "correct_free": free.tolist()}


class Scoring(NamedTuple):
    """How every run of a comparison is scored."""

    buckets: List[tuple]  # reference-length buckets (words) for BLEU by length
    checkpoint: str  # "best" or "last"
    beam_sizes: List[int]  # test BLEU at each beam size
    extra: List[Tuple[str, List[str], List[str]]]  # (name, sources, references) of extra tests
    oracle: Optional[str] = None  # the toy task with an exact oracle (compare/oracle.py), if any
    sets: Tuple[str, ...] = ()  # the splits the oracle is measured on (extras added); the
    # last is the test split (data.test_split, else data.valid_split): the hallucination's too
    injection_n: int = 0  # translation: the pairs of each scored set the injection probes

    def labels(self) -> Dict[str, List[str]]:
        """What a result scored this way holds, to tell whether an old result can be reused."""
        return {"bleu_by_length": [bucket_label(b) for b in self.buckets],
                "bleu_by_beam": [str(k) for k in self.beam_sizes],
                "extra_bleu": [name for name, _, _ in self.extra],
                "extra_bleu_by_beam": [name for name, _, _ in self.extra],
                "exaccerr": ([*self.sets, *(name for name, _, _ in self.extra)]
                             if self.oracle else []),
                "hallucination": [*self.sets[-1:], *(name for name, _, _ in self.extra)],
                "oracle_measures": self.oracle_measures()}

    def oracle_measures(self) -> List[str]:
        """How the oracle measures were taken (their bootstrap draws kept, the injection
        positions, free runs that never predict padding): a result measured otherwise is
        measured again."""
        return ["draws", *(f"t{t}" for t in POSITIONS), "no-pad-3"] if self.oracle else []


def wants_injection(scoring: Scoring) -> bool:
    """Whether the runs get the error-injection probe on translation (``--injection-sentences``;
    toy tasks with an oracle always probe against it)."""
    return bool(scoring.injection_n) and not scoring.oracle


def reference_injection(model, tok, run_cfg, dataset, scoring: Scoring) -> Dict[str, Any]:
    """A translation run's error injection (compare-tf ``--injection-sentences``):
    :func:`~seq2seq.compare.injection.probe` at its positions on the first
    ``scoring.injection_n`` pairs of the test split and of each extra test set, as the keys of
    its result. Scored against the reference suffix, and labelled so: the divergence from the
    reference path after k forced wrong pieces, not recovery (a right paraphrase counts as
    wrong)."""
    from seq2seq.data.batching import encode_pairs

    n, split = scoring.injection_n, run_cfg.data.test_split or run_cfg.data.valid_split
    sets = [(split, *read_split(run_cfg, split, dataset)), *scoring.extra]
    device = next(model.parameters()).device
    return {"injection": {name: probe(model, encode_pairs(tok, (srcs[:n], refs[:n])),
                                      run_cfg.decode.batch_size, device, ts=POSITIONS)
                          for name, srcs, refs in sets if srcs},
            "injection_against": REFERENCE, "injection_sentences": n}


def same_config(a: Optional[dict], b: dict) -> bool:
    """Whether two configs (as dicts) describe the same run: torch's thread count (which
    ``--jobs`` sets) does not change what a run computes with one thread or several. A key
    that ``a`` (a stored run's) lacks, added to the config since with a default that keeps
    what runs computed, reads as that default: the run is still the same."""
    from seq2seq import config

    def complete(c: dict) -> dict:
        try:
            c = config.from_dict(c).to_dict()
        except UserError:  # a stored config this version cannot read: not the same run
            return {}
        return {**c, "train": {k: v for k, v in c["train"].items() if k != "threads"}}

    return a is not None and "train" in a and complete(a) == complete(b) != {}


def at_beam(beam: int) -> Dict[str, Any]:
    """The decode overrides of the comparison's scores at ``beam`` (1: greedy search, the
    argmax, even where the config samples); the config's other settings stay, less what the
    beam makes meaningless (:func:`seq2seq.decoding.settings.decode_settings`)."""
    return {"beam": beam, "sample": False}


def start_of(init_from: Optional[Path]) -> Optional[str]:
    """What a fine-tuning run starts from, to tell whether its result still holds: the
    checkpoint's resolved path and a hash of its bytes (a stage 1 trained again writes a new
    checkpoint at the same path)."""
    if init_from is None:
        return None
    import hashlib

    path = Path(init_from).resolve()
    if not path.is_file():
        raise UserError(f"the fine-tuning runs start from {path}, which is not there")
    return f"{path}@sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def train_and_evaluate(cfg, run_dir: Path, dataset, scoring: Scoring, progress: bool,
                       fresh: bool, init_from: Optional[Path] = None) -> Dict[str, Any]:
    """Train one model, then score it. A finished run with the same config (and the same
    ``init_from``: the checkpoint a fine-tuning run starts from) is reused; an interrupted one
    (or one scored otherwise) is resumed from its last.pt."""
    from seq2seq.data.batching import encode_pairs

    buckets, checkpoint = scoring.buckets, scoring.checkpoint
    start = start_of(init_from)
    result_path = run_dir / "result.json"
    if not fresh and result_path.is_file():
        old = json.loads(result_path.read_text(encoding="utf-8"))
        if (same_config(old.get("config"), cfg.to_dict()) and old.get("checkpoint") == checkpoint
                and old.get("init_from") == start
                and all(list(old.get(k, {})) == v for k, v in scoring.labels().items())):
            log(f"reusing the finished run in {run_dir} (--fresh trains it again)")
            if wants_injection(scoring) and old.get("injection_sentences") != scoring.injection_n:
                model, tok, run_cfg = load_model(run_dir / f"{checkpoint}.pt",
                                                 device=pick_device(cfg.train.device))
                old.update(reference_injection(model, tok, run_cfg, dataset, scoring))
                result_path.write_text(json.dumps(old, indent=1) + "\n", encoding="utf-8")
            return {"epochs": float("nan"), "stopped_by": "?", **old}  # older results lack them
    saved, started = run_dir / "config.yaml", run_dir / "init_from.txt"
    same_run = (not fresh and saved.is_file() and (run_dir / "last.pt").is_file()
                and same_config(yaml.safe_load(saved.read_text(encoding="utf-8")),
                                cfg.to_dict())
                and (started.read_text(encoding="utf-8") if started.is_file() else None) == start)
    if start is not None and not same_run:  # what an interrupted run must resume from
        run_dir.mkdir(parents=True, exist_ok=True)
        started.write_text(start, encoding="utf-8")
    elif start is None:
        started.unlink(missing_ok=True)
    t0 = time.time()
    summary = train(cfg, run_dir, resume=same_run, overwrite=True, dataset=dataset,
                    progress=progress, extra_validation={"free_running": True},
                    init_from=None if same_run else init_from)  # a resumed run keeps its start
    if summary["interrupted"]:
        raise KeyboardInterrupt
    device = pick_device(cfg.train.device)
    # the checkpoint's config: the run's, with the output limit it learned where cfg has none
    model, tok, run_cfg = load_model(run_dir / f"{checkpoint}.pt", device=device)
    d = run_cfg.data
    diag_split = d.valid_split or d.test_split
    diag = encode_pairs(tok, read_split(run_cfg, diag_split, dataset))
    v = validate(model, diag, tok, run_cfg, device, free_running=True)
    pos = position_accuracy(model, diag, run_cfg.decode.batch_size, device)
    ev = evaluate_model(model, tok, run_cfg, d.test_split or d.valid_split, dataset,
                        decode=at_beam(1), device=device,  # greedy, whatever the config says
                        log_probs=True)  # the hallucination proxy's confidence
    (run_dir / f"{ev.split}.hyp").write_text("".join(h + "\n" for h in ev.hyps),
                                             encoding="utf-8")
    by_len = {}
    for b in buckets:
        idx = [i for i, r in enumerate(ev.refs) if b[0] <= len(r.split()) <= b[1]]
        by_len[bucket_label(b)] = score([ev.hyps[i] for i in idx],
                                        [ev.refs[i] for i in idx])["bleu"]
    def decoded(srcs, refs, name, beam):  # with the checkpoint's config: its learned limit
        e = evaluate_lines(model, tok, run_cfg, srcs, refs, name, at_beam(beam), device,
                           log_probs=beam == 1)
        (run_dir / hyp_file(name, beam)).write_text("".join(h + "\n" for h in e.hyps),
                                                    encoding="utf-8")  # for the pooled tests
        return e

    bleu = lambda srcs, refs, name, beam: decoded(srcs, refs, name, beam).scores["bleu"]
    by_beam = {str(k): ev.scores["bleu"] if k == 1 else bleu(ev.srcs, ev.refs, ev.split, k)
               for k in scoring.beam_sizes}
    greedy = [ev] + [decoded(srcs, refs, name, 1) for name, srcs, refs in scoring.extra]
    extra = {e.split: e.scores["bleu"] for e in greedy[1:]}
    extra_by_beam = {name: {str(k): bleu(srcs, refs, name, k) for k in scoring.beam_sizes if k > 1}
                     for name, srcs, refs in scoring.extra}
    s = ev.scores
    oracle_sets = {split: encode_pairs(tok, read_split(run_cfg, split, dataset))
                   for split in scoring.sets} if scoring.oracle else {}
    oracle_sets.update({name: encode_pairs(tok, (srcs, refs))
                        for name, srcs, refs in scoring.extra if scoring.oracle})
    result = {
        "bleu": s["bleu"], "chrf": s["chrf"], "exact_match": s["exact_match"],
        "valid_loss_tf": v["valid_loss"], "valid_loss_free": v["valid_loss_free"],
        "gap": v["valid_loss_free"] - v["valid_loss"],
        "free_acc": 100.0 * sum(pos["correct_free"]) / max(1, sum(pos["n"])),
        "tf_acc": 100.0 * sum(pos["correct_tf"]) / max(1, sum(pos["n"])),
        "bleu_by_length": by_len, "bleu_by_beam": by_beam, "extra_bleu": extra,
        "extra_bleu_by_beam": extra_by_beam,
        "hallucination": {e.split: {**evaluation_report(e),  # per scored set; the pooled
                                    "hallucination_flagged": evaluation_flagged(e)}  # test's
                          for e in greedy},
        "exaccerr": measure(model, oracle_sets, run_cfg.decode.batch_size, device,
                            task=scoring.oracle, draws=True),
        "injection": {name: probe(model, data, run_cfg.decode.batch_size, device,
                                  ts=POSITIONS, task=scoring.oracle)
                      for name, data in oracle_sets.items() if len(data.tgt)},
        "steps": summary["steps"], "epochs": summary["epochs"],
        "stopped_by": summary["stopped_by"],
        "train_seconds": summary["train_seconds"], "wall_seconds": time.time() - t0,
        "position": pos, "eval_split": ev.split, "diag_split": diag_split,
        "signature": s["signature"], "checkpoint": checkpoint, "config": cfg.to_dict(),
        "init_from": start, "oracle_measures": scoring.oracle_measures(),
        **(reference_injection(model, tok, run_cfg, dataset, scoring)
           if wants_injection(scoring) else {}),
    }
    result_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result
