"""The Python API: what the command line does, from a notebook, a pipeline or a service.

    from seq2seq import Translator
    tr = Translator.load("runs/reverse")        # a run folder, a .pt file, an exported folder,
    tr.translate("a c e g")                     # or a list of checkpoints (an ensemble)
    tr.translate(["a b", "c d"], beam=5)        # a list in, a list out
    tr.translate("a b", sample=True, seed=1, return_scores=True)   # Translation(text, score)
    tr.score(["a b"], ["b a"])                  # [PairScore(log_prob, tokens)]
    tr.evaluate(sources, references)            # BLEU, chrF, exact match, hallucination rate

    import seq2seq
    summary = seq2seq.train("recipes/reverse.yaml", "runs/r", overrides=["train.max_steps=200"])

The same code runs underneath as under ``seq2seq translate / score / evaluate / train``: one
loader (:mod:`seq2seq.load`), the same decoding settings (a keyword here is the option of the
same name there, ``None`` meaning the model's own ``decode`` config), the same outputs. Errors
are raised as :class:`seq2seq.errors.UserError` with the command line's message (never
``sys.exit``); nothing is printed unless asked (``verbose=True``; ``train``'s ``progress``).
"""

import contextlib
import io
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

from seq2seq import config as config_mod
from seq2seq.config import Config
from seq2seq.errors import ConfigError, UserError

PathLike = Union[str, os.PathLike]
Texts = Union[str, Sequence[str]]


class Translation(NamedTuple):
    """One output of :meth:`Translator.translate` with ``return_scores`` or
    ``return_attention``."""

    text: str
    score: Optional[float] = None  # log P(output pieces + EOS | source), natural log
    attention: Optional[Any] = None  # (source pieces, output pieces, weights (T, S) tensor)


_QUIET = threading.Lock()


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Whatever the toolkit writes to stdout/stderr (warnings, logs) swallowed unless
    ``verbose``. It redirects ``sys.stdout``/``sys.stderr`` for the call, which the process
    shares: quiet calls from several threads take turns (a lock), and what another thread
    prints meanwhile is swallowed too; a multi-threaded service passes ``verbose=True``."""
    if verbose:
        yield
        return
    sink = io.StringIO()
    with _QUIET, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _as_list(texts: Texts, what: str) -> List[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise UserError(f"{what}: expected a string or a list of strings")
    return list(texts)


class Translator:
    """A trained model ready to translate; build it with :meth:`load`.

    Attributes: ``config`` (the :class:`seq2seq.config.Config` it was trained with, its
    ``decode`` section the defaults of :meth:`translate`), ``tokenizer``, ``model``,
    ``device``.
    """

    def __init__(self, model, tokenizer, config: Config, device, bf16: bool = False) -> None:
        self.model, self.tokenizer, self.config, self.device = model, tokenizer, config, device
        self.bf16 = bf16

    @classmethod
    def load(cls, path: Union[PathLike, Sequence[PathLike]], *, device: str = "auto",
             bf16: bool = False, threads: Optional[int] = None,
             impl: Optional[str] = None) -> "Translator":
        """Load a checkpoint file, a run folder (its ``best.pt``), a folder written by
        ``seq2seq export`` (run by ONNX Runtime), or a list of checkpoints (an ensemble: their
        log-probabilities averaged).

        Args:
            device: ``auto`` (CUDA where torch sees a GPU), ``cpu``, ``cuda``, ``cuda:1``.
            bf16: decode under bfloat16 autocast by default (``translate(bf16=...)`` too).
            threads: torch's intra-op threads (None: torch's default); for an exported
                folder, ONNX Runtime's.
            impl: ``manual`` | ``fused``: the recurrent layers to run (the weights are the same).
        """
        from seq2seq.kernels.device import set_threads
        from seq2seq.load import load_for_decoding

        if threads is not None:
            set_threads(threads)
        model, tok, cfg, dev = load_for_decoding(path, impl=impl, device=device,
                                                 threads=threads or 0)
        return cls(model, tok, cfg, dev, bf16)

    def decode_config(self, **overrides) -> config_mod.DecodeConfig:
        """The :class:`seq2seq.config.DecodeConfig` that :meth:`translate` runs with: the
        model's ``decode`` section with ``overrides`` (None values ignored), checked as the
        command line checks it."""
        from seq2seq.decoding.evaluate import decode_config

        unknown = set(overrides) - set(_DECODE_KEYS)
        if unknown:
            raise UserError(f"unknown decoding option(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(_DECODE_KEYS)})")
        if overrides.get("bf16") is None and self.bf16:
            overrides["bf16"] = True
        return decode_config(self.config, overrides, self.model)

    def translate(self, texts: Texts, *, beam: Optional[int] = None,
                  length_penalty: Optional[float] = None, n_best: Optional[int] = None,
                  sample: Optional[bool] = None, temperature: Optional[float] = None,
                  top_k: Optional[int] = None, top_p: Optional[float] = None,
                  seed: Optional[int] = None, prefix: Optional[Texts] = None,
                  no_repeat_ngram: Optional[int] = None,
                  coverage_penalty: Optional[float] = None,
                  max_len_a: Optional[float] = None, max_len_b: Optional[int] = None,
                  batch_size: Optional[int] = None, bf16: Optional[bool] = None,
                  return_scores: bool = False, return_attention: bool = False,
                  verbose: bool = False):
        """Translate a string (-> a string) or a list of strings (-> a list, in order).

        Every keyword is ``seq2seq translate``'s option of the same name (``--top-p`` is
        ``top_p``); None keeps the model's ``decode`` config. ``prefix``: a target prefix each
        output starts with (a string for one input, else one per input). ``n_best > 1``: a list
        of ``n_best`` outputs per input (beam search's best, or ``sample=True``'s samples).
        ``return_scores`` / ``return_attention`` (greedy only): :class:`Translation` items
        instead of strings. ``verbose``: let warnings (outputs cut short by the output limit,
        sources truncated) reach stderr.
        """
        from seq2seq.decoding.ensemble import Ensemble
        from seq2seq.decoding.search import translate

        one = isinstance(texts, str)
        lines = _as_list(texts, "translate")
        prefixes = None
        if prefix is not None:
            prefixes = _as_list(prefix, "prefix")
            if len(prefixes) != len(lines):
                raise UserError(f"prefix: {len(prefixes)} prefixes for {len(lines)} inputs: "
                                "one prefix (maybe empty) per input")
        opts = self.decode_config(
            beam=beam, length_penalty=length_penalty, n_best=n_best, sample=sample,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
            no_repeat_ngram=no_repeat_ngram, coverage_penalty=coverage_penalty,
            max_len_a=max_len_a, max_len_b=max_len_b, batch_size=batch_size, bf16=bf16)
        if return_attention and (opts.beam > 1 or opts.n_best > 1):
            raise UserError("return_attention works with one output per line (beam=1, "
                            "n_best=1)")
        if opts.coverage_penalty and not Ensemble.of(self.model).has_attention:
            raise UserError("--coverage-penalty needs a model with attention (model.attention)")
        with _quiet(verbose):
            r = translate(self.model, self.tokenizer, lines, opts, device=self.device,
                          return_attention=return_attention, prefixes=prefixes,
                          log_probs=return_scores, warn=verbose)
        out: List[Any] = list(r.hyps)
        if return_scores or return_attention:
            scores = r.log_probs or [None] * len(out)
            maps = r.attention or [None] * len(out)
            if opts.n_best > 1:
                out = [[Translation(h, s) for h, s in zip(hs, ss or [None] * len(hs))]
                       for hs, ss in zip(out, scores)]
            else:
                out = [Translation(h, s, m) for h, s, m in zip(out, scores, maps)]
        return out[0] if one else out

    def score(self, sources: Texts, targets: Texts, *, free_running: bool = False,
              batch_size: Optional[int] = None) -> list:
        """``seq2seq score``: one :class:`seq2seq.decoding.scoring.PairScore` per pair
        (``log_prob`` of the target pieces and EOS given the source, ``tokens``,
        ``per_token``): teacher-forced, or ``free_running`` (fed its own argmax)."""
        from seq2seq.decoding.scoring import score_pairs

        if getattr(self.model, "engine", "pytorch") != "pytorch":
            raise UserError("score needs a PyTorch checkpoint (an exported model has no "
                            "teacher-forced pass)")
        srcs, tgts = _as_list(sources, "score sources"), _as_list(targets, "score targets")
        if len(srcs) != len(tgts):
            raise UserError(f"score: {len(srcs)} sources but {len(tgts)} targets: score "
                            "needs one target per source")
        for name, lines in (("sources", srcs), ("targets", tgts)):
            empty = [i + 1 for i, l in enumerate(lines) if not l.strip()]
            if empty:
                raise UserError(f"score: {name} item {empty[0]} is empty: score needs a "
                                "sentence on both sides of every pair")
        return score_pairs(self.model, self.tokenizer, srcs, tgts,
                           batch_size or self.config.decode.batch_size, self.device,
                           free_running)

    def evaluate(self, sources: Sequence[str], references: Sequence[str], *,
                 verbose: bool = False, **decode) -> Dict[str, Any]:
        """Translate ``sources`` (``decode``: :meth:`translate`'s decoding keywords, ``beam``
        to ``bf16``; not ``prefix`` or the ``return_*`` ones) and score the
        outputs against ``references``: sacreBLEU BLEU and chrF with their signatures, exact
        match, the outputs cut short by the output limit, and the hallucination rate as
        ``seq2seq evaluate --json`` reports it (keys starting with ``hallucination``: exact,
        ``hallucination_rate``, where the pairs follow an aligned toy task; else the proxy,
        ``hallucination_proxy_rate``); the outputs under ``hyps``."""
        from seq2seq.decoding.evaluate import evaluate_lines
        from seq2seq.decoding.hallucination import evaluation_report

        srcs, refs = _as_list(sources, "evaluate sources"), _as_list(references, "references")
        if len(srcs) != len(refs):
            raise UserError(f"evaluate: {len(srcs)} sources but {len(refs)} references")
        opts = self.decode_config(**decode)
        overrides = {k: getattr(opts, k) for k in _DECODE_KEYS}
        with _quiet(verbose):
            ev = evaluate_lines(self.model, self.tokenizer, self.config, srcs, refs, "api",
                                overrides, self.device, log_probs=True)
            report = evaluation_report(ev)
        return {**ev.scores, **report, "hyps": ev.hyps}


_DECODE_KEYS = ("beam", "length_penalty", "n_best", "sample", "temperature", "top_k", "top_p",
                "seed", "no_repeat_ngram", "coverage_penalty", "max_len_a", "max_len_b",
                "batch_size", "bf16")


def load_config(config_or_path: Union[None, PathLike, Config, Dict[str, Any]] = None,
                overrides: Sequence[str] = ()) -> Config:
    """A :class:`seq2seq.config.Config` from a YAML file (None: the defaults), a dict of
    sections, or a Config, with ``overrides`` (``"train.lr=0.001"``, as ``--set``) applied;
    unknown keys are refused with the nearest valid one."""
    if config_or_path is None or isinstance(config_or_path, (str, os.PathLike)):
        return config_mod.load(config_or_path, list(overrides))
    d = config_or_path.to_dict() if isinstance(config_or_path, Config) else config_or_path
    if not isinstance(d, dict):
        raise ConfigError("load_config takes a path, a dict of sections or a Config")
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for text in overrides:
        (section, key), value = config_mod.parse_override(text)
        d.setdefault(section, {})[key] = value
    return config_mod.from_dict(d)


def train(config_or_path: Union[PathLike, Config, Dict[str, Any]], out: PathLike, *,
          overrides: Sequence[str] = (), resume: bool = False, overwrite: bool = False,
          init_from: Optional[PathLike] = None, progress: bool = True,
          dataset=None) -> Dict[str, Any]:
    """``seq2seq train``: train a model into the run folder ``out`` and return the run's
    summary (``best`` validation record and checkpoint, ``steps``, ``stopped_by``, ...).

    ``config_or_path``: a YAML file, a dict of sections or a :class:`Config`; ``overrides``:
    ``"section.key=value"`` strings (``--set``); ``resume``: continue the run in ``out``;
    ``overwrite``: start again where ``out`` holds a run; ``init_from``: start from the weights
    and tokenizer of a finished run (``--init-from``: fine-tuning, with a fresh optimizer and
    schedule); ``progress``: the progress bar and
    the log on stderr (False: silent); ``dataset``: a ``datasets.DatasetDict`` to train on
    instead of ``data``. Same config and seed: the same metrics as the command line.
    """
    from seq2seq.training.loop import train as run_training

    cfg = load_config(config_or_path, overrides)
    with _quiet(progress):
        summary = run_training(cfg, out, resume=resume, overwrite=overwrite, dataset=dataset,
                               progress=progress, init_from=init_from)
    if summary.get("interrupted"):
        raise KeyboardInterrupt
    best = Path(out) / "best.pt"
    return {**summary, "checkpoint": str(best if best.is_file() else Path(out) / "last.pt")}


__all__ = ["Translator", "Translation", "train", "load_config", "Config", "UserError",
           "ConfigError"]
