"""Where a training run starts: afresh, from its own ``last.pt`` (``train --resume``), or from
the weights of another, finished run (``train --init-from CHECKPOINT``: fine-tuning).

    start = begin(cfg, folder, resume, overwrite, init_from, log, dist)  # which, and its checks
    restore(start.resumed, model, ema, opt, st, rank)  # --resume: the weights and everything

``--resume`` continues a run exactly: the weights, the optimizer and its schedule, the loop's
state and the random number generators (:func:`restore`). ``--init-from`` starts a new run from
another run's model weights (its checkpoint's ``model``: the average, with ``train.ema_decay``)
and tokenizer (the same vocabulary, not learned again), with a fresh optimizer, learning-rate
schedule, step count and loop state. The run's model section must describe the same
architecture; the keys of :data:`MAY_DIFFER` (how the model runs, and its dropout) are the
run's own.
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from seq2seq.config import Config, from_dict
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import UserError

from . import checkpoint, distributed
from .rng import set_rng_state

# model keys that do not change what the weights are: the layers' implementation and speed
# paths (the same function to rounding), and dropout (a regularizer of the new training)
MAY_DIFFER = ("impl", "manual_backward", "kernels", "dropout")


class Start(NamedTuple):
    """Where a run starts (:func:`begin`); a fresh run has None for all but ``cfg``."""

    cfg: Config  # the run's config (with --init-from, that checkpoint's tokenizer section)
    last: Optional[Path]  # --resume: the run's own checkpoint to continue
    resumed: Optional[Dict[str, Any]]  # what it holds
    init: Optional[Dict[str, Any]]  # --init-from: the checkpoint whose weights the run takes
    tokenizer: Optional[Tokenizer]  # the tokenizer of either (None: learn one from the data)
    init_from: Optional[str]  # the checkpoint the run's weights started from (kept on resume)


def begin(cfg: Config, folder, resume: bool, overwrite: bool, init_from,
          log: Callable[[str], None], d: distributed.Dist) -> Start:
    """Check the run folder (rank 0; :meth:`seq2seq.training.run_folder.RunFolder.prepare`)
    and load what the run starts from: its ``last.pt`` with ``resume``, the checkpoint
    ``init_from`` (:func:`init_checkpoint`; not with ``resume``), or nothing."""
    if resume and init_from is not None:
        raise UserError("--init-from starts a new run from another run's weights, --resume "
                        "continues the run in --out: give one of them")
    if (cfg.train.objective == "mrt" and cfg.mrt.mle_weight == 0 and init_from is None
            and not (resume and (Path(folder.path) / "last.pt").is_file())):
        raise UserError("train.objective mrt learns from the model's own samples, and a new "
                        "run's model is untrained (it knows only its vocabulary): start from a "
                        "trained run with --init-from RUN, or mix in the token loss with "
                        "mrt.mle_weight > 0")
    init = None
    if init_from is not None:  # loaded before --overwrite could clear a folder that holds it
        cfg, init = init_checkpoint(init_from, cfg)
        if overwrite and Path(folder.path).resolve() in Path(init["init_from"]).parents:
            raise UserError(f"--init-from {init_from} lies in --out {folder.path}, which "
                            "--overwrite would clear: write the new run to another folder")
    # rank 0 checks and prepares the run folder; the broadcast makes the others wait for it
    last = distributed.on_main(lambda: folder.prepare(resume, overwrite, log), d)
    resumed = checkpoint.load_resumable(last, cfg.model) if last else None
    if init is not None:
        step = init.get("train_state", {}).get("step")  # none in an averaged checkpoint
        log(f"initialized from {init['init_from']} (its weights and tokenizer"
            + (f", step {step} of that run" if step is not None else "") + "), with a fresh "
            "optimizer, learning-rate schedule and step count")
    held = resumed or init
    return Start(cfg, last, resumed, init, Tokenizer.from_state(held["tokenizer"]) if held
                 else None, (held or {}).get("init_from"))


def init_checkpoint(path, cfg: Config) -> Tuple[Config, Dict[str, Any]]:
    """The checkpoint (a ``.pt`` file, or a run folder: its ``best.pt``, else ``last.pt``) a
    run starts from with ``--init-from``, and the run's config with that checkpoint's tokenizer
    section. A model key outside :data:`MAY_DIFFER` on which ``cfg`` and the checkpoint differ
    is refused with one line naming it. The checkpoint's file, resolved, is under
    ``"init_from"``."""
    file = checkpoint.resolve(path)
    ckpt = checkpoint.load(file)
    saved = checkpoint.config_of(ckpt)
    try:
        model = from_dict({"model": saved["model"]}).model
        tokenizer = from_dict({"tokenizer": saved.get("tokenizer") or {}}).tokenizer
    except UserError as e:
        raise UserError(f"--init-from {path}: its config does not fit this version: {e}") from None
    for f in dataclasses.fields(model):
        mine, theirs = getattr(cfg.model, f.name), getattr(model, f.name)
        if f.name not in MAY_DIFFER and mine != theirs:
            raise UserError(f"--init-from {path}: model.{f.name} is {mine!r} in the config but "
                            f"{theirs!r} in {file}: a run starts from weights of the same "
                            f"architecture (set model.{f.name}={theirs!r})")
    return cfg.replace(tokenizer=tokenizer), {**ckpt, "init_from": str(Path(file).resolve())}


def restore(ckpt: Dict[str, Any], model, ema, opt, st, rank: int) -> None:
    """Continue from a ``--resume`` checkpoint: the weights (with an average, ``model`` holds
    it and ``train_weights`` what the optimizer trains), the optimizer, the loop's state ``st``
    and this process's random number generators (``rank``)."""
    model.load_state_dict(ckpt.get("train_weights", ckpt["model"]))
    if ema is not None:
        ema.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    st.update(ckpt["train_state"])
    if rank:  # the saved window holds every process's sum: count it once
        st.clear_window()
    set_rng_state(ckpt["rng"], rank)
