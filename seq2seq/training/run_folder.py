"""A training run's folder: what it holds, and how a new, resumed or overwritten run treats it.

    DIR/last.pt          the latest checkpoint (written at every validation and on Ctrl-C)
    DIR/best.pt          the checkpoint with the best validation score so far
    DIR/step-N.pt        the last ``train.keep_last`` validation checkpoints (for averaging)
    DIR/config.yaml      the run's config, every key (data files as absolute paths)
    DIR/metrics.jsonl    one JSON record per validation
    DIR/curves.png       loss and BLEU curves (drawn at most once a minute, and at the end)
    DIR/events.out.tfevents.*  with train.tensorboard: the same records for TensorBoard
    DIR/summary.json, DIR/README.md  at the end: the run's summary and its model card
                         (seq2seq.training.model_card)

Checkpoints are written atomically (:func:`seq2seq.training.checkpoint.save`). The config they
hold names data files that lie in the folder relative to it (:meth:`RunFolder.stored_config`),
so that a run folder that holds its data can move, to another place or machine.
"""

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from seq2seq.config import Config, to_yaml
from seq2seq.data.readers import relative_paths
from seq2seq.errors import UserError

from . import checkpoint
from .plots import training_curves
from .tensorboard_log import EXAMPLES, TensorBoardLog, require

RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "curves.png")
EVENTS = "events.out.tfevents.*"  # TensorBoard's event files


def kept(run_dir) -> List[Path]:
    """The ``step-N.pt`` checkpoints that ``train.keep_last`` kept in a run folder, oldest first."""
    return sorted(Path(run_dir).glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


class RunFolder:
    """The folder of one run (see the module docstring). ``tensorboard``: also write the
    records as TensorBoard events (the package is checked now, the files written by
    :meth:`append`, closed by :meth:`finish`)."""

    def __init__(self, path, tensorboard: bool = False) -> None:
        if tensorboard:
            require()
        self.tensorboard = tensorboard
        self.examples = EXAMPLES if tensorboard else 0  # validation translations per record
        self._events: Optional[TensorBoardLog] = None
        self._purge_step: Optional[int] = None
        self.path = Path(path)
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"
        self.metrics = self.path / "metrics.jsonl"
        self.curves = self.path / "curves.png"
        self._plotted = time.time()

    def prepare(self, resume: bool, overwrite: bool, log: Callable[[str], None] = print
                ) -> Optional[Path]:
        """Check the folder and create it; return the checkpoint to resume from, if any.

        A folder that holds a run needs ``resume`` (continue it) or ``overwrite`` (its run
        files are deleted); ``resume`` on an empty folder starts a new run.
        """
        out = self.path
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file, not a folder")
        if out.is_dir():  # temporary files of a save that was killed (see checkpoint.save)
            for tmp in out.glob(".*.pt.*.tmp"):
                tmp.unlink(missing_ok=True)
        held = ([n for n in RUN_FILES if (out / n).exists()] + [p.name for p in kept(out)]
                + sorted(p.name for p in out.glob(EVENTS)))
        if resume:
            if self.last.is_file():
                return self.last
            if held:
                raise UserError(f"--resume: {out} has no last.pt to resume from (it holds "
                                f"{', '.join(held)}); use --overwrite to start again")
            log(f"--resume: no checkpoint in {out} yet, starting a new run")
        elif held:
            if not overwrite:
                raise UserError(f"--out {out} already holds a run ({', '.join(held)}); use "
                                "--resume to continue it or --overwrite to start again")
            for name in held:
                (out / name).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        return None

    def write_config(self, cfg: Config) -> None:
        (self.path / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")

    def stored_config(self, cfg: Config) -> Dict[str, Any]:
        """``cfg`` as the run's checkpoints hold it: data files in this folder relative to it
        (:func:`seq2seq.load.load_model` reads them from the checkpoint's folder), others
        absolute."""
        return cfg.replace(data=relative_paths(cfg.data, self.path)).to_dict()

    def records(self, upto_step: int) -> List[Dict[str, Any]]:
        """The validation records up to ``upto_step`` (a resumed run's checkpoint); records
        written after it (by a run killed between a validation and its checkpoint) are
        removed from ``metrics.jsonl``."""
        if not self.metrics.exists():
            return []
        records = [json.loads(l) for l in self.metrics.read_text(encoding="utf-8").splitlines()]
        kept_records = [r for r in records if r["step"] <= upto_step]
        self._purge_step = upto_step + 1  # TensorBoard hides later events of the killed run
        if len(kept_records) != len(records):
            self.metrics.write_text("".join(json.dumps(r) + "\n" for r in kept_records),
                                    encoding="utf-8")
        return kept_records

    def append(self, record: Dict[str, Any], examples: Optional[List[Dict[str, str]]] = None
               ) -> None:
        """One validation record to ``metrics.jsonl`` (and TensorBoard, with ``examples``:
        a few validation translations)."""
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard:
            if self._events is None:
                self._events = TensorBoardLog(self.path, self._purge_step)
            self._events.write(record, examples)

    def save(self, payload: Dict[str, Any], step: int, best: bool, keep_last: int,
             replace_last: bool = False) -> None:
        """``last.pt``; ``best.pt`` when ``best``; ``step-N.pt``, of which the last
        ``keep_last`` are kept (none with 0); with ``replace_last`` (the end of a run) it takes
        the place of the newest one when it is less than half an interval after it, so that an
        average does not count nearly the same weights twice."""
        checkpoint.save(payload, self.last)
        if best:
            checkpoint.save(payload, self.best)
        if keep_last:
            steps = [int(p.stem.split("-")[1]) for p in kept(self.path)]
            interval = steps[-1] - (steps[-2] if len(steps) > 1 else 0) if steps else 0
            close = replace_last and steps and step - steps[-1] < interval / 2
            previous = kept(self.path)[-1:] if close else []
            checkpoint.save(payload, self.path / f"step-{step}.pt")
            rest = [p for p in kept(self.path) if p not in previous]
            for old in previous + rest[:-keep_last]:
                if old.name != f"step-{step}.pt":
                    old.unlink(missing_ok=True)

    def finish(self, records: List[Dict[str, Any]]) -> None:
        """The end of a run: draw ``curves.png`` now, close the TensorBoard files."""
        self.plot(records, force=True)
        if self._events is not None:
            self._events.close()
            self._events = None

    def plot(self, records: List[Dict[str, Any]], force: bool = False) -> None:
        """Draw ``curves.png``: with ``force``, now; else at most once a minute (it is slow)."""
        if records and (force or time.time() - self._plotted > 60):
            training_curves(records, self.curves)
            self._plotted = time.time()
