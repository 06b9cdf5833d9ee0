"""``seq2seq evaluate`` on a toy run: its data generated again, and the exact-oracle measures of
the decoded split (ExAccErr, :mod:`.oracle`; error injection, :mod:`.injection`) as flat keys.

A toy run's config has no ``data.path``: its data comes from :mod:`seq2seq.data.toy`, and the
task is ``--toy TASK`` or the one ``recipes/toy.py`` records in the run's ``scores.json``
(``toy_task``, ``data_seed``). ``compare-tf``'s runs do not record it: give ``--toy``.

    toy = toy_data(cfg, "runs/reverse", None, None)            # ToyData(task, seed, dataset)
    keys = oracle_keys(model, tok, cfg, "test", toy, device)   # exaccerr_*, injection_*
    print(format_oracle(keys))

The keys: ``exaccerr_task``, ``exaccerr_set``, ``exaccerr_n``; ``exaccerr_total`` and
``exaccerr_total_pct`` (:func:`seq2seq.compare.oracle.measure`'s, per output: the summed excess
loss and its share of the summed free-running loss); ``exaccerr_error_before_first`` and
``exaccerr_error_after_first`` (greedy error rates in percent, pooled over the positions with no
error before them and over those after the first error); ``exaccerr_by_position`` (the curves,
NaN as null); and ``injection_KEY_STAT`` for every entry ``KEY`` (``HOW_K_tT``) of
:func:`seq2seq.compare.injection.probe` at the comparison's positions
(:data:`~seq2seq.compare.injection.POSITIONS`): ``acc``, ``exact`` (percent), ``loss``
(nats), ``n``, ``t``.
"""

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

from seq2seq.errors import UserError

from .injection import POSITIONS, probe
from .oracle import measure, oracle_task

#: the keys ``recipes/toy.py`` adds to a run's scores.json
TASK_KEY, SEED_KEY = "toy_task", "data_seed"


class ToyData(NamedTuple):
    """A toy run's data."""

    task: str  # a key of seq2seq.data.toy.TASKS
    seed: int  # the data seed
    dataset: Any  # datasets.DatasetDict


def recorded(checkpoint) -> Dict[str, Any]:
    """``toy_task`` and ``data_seed`` of the run that ``checkpoint`` (a run folder or a file in
    one) belongs to, from its scores.json; ``{}`` when it records none."""
    path = Path(checkpoint)
    scores = (path if path.is_dir() else path.parent) / "scores.json"
    try:
        s = json.loads(scores.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: s[k] for k in (TASK_KEY, SEED_KEY) if k in s}


def toy_data(cfg, checkpoint, toy: Optional[str], data_seed: Optional[int]
             ) -> Optional[ToyData]:
    """The data of a toy run (``cfg`` without ``data.path``): task ``toy`` or the recorded one,
    seed ``data_seed`` or the recorded one (default 1). None for a run on real data."""
    from seq2seq.data.toy import TASKS, dataset

    if cfg.data.path is not None:
        if toy:
            raise UserError(f"--toy {toy}: the checkpoint's run reads its data from data.path "
                            f"{cfg.data.path!r}; drop --toy")
        return None
    rec = recorded(checkpoint)
    task = toy or rec.get(TASK_KEY)
    if task not in TASKS:
        raise UserError(f"{checkpoint} is a toy run (no data.path) that does not say its task: "
                        f"give --toy TASK ({', '.join(TASKS)})")
    seed = data_seed if data_seed is not None else int(rec.get(SEED_KEY, 1))
    return ToyData(task, seed, dataset(task, seed))


def single_model(model):
    """The one PyTorch model the oracle measures step (an ensemble of one's member), or None
    (several checkpoints, an exported folder)."""
    models = getattr(model, "models", None)
    if models is not None and len(models) == 1 and hasattr(models[0], "decoder"):
        return models[0]
    return None


def measurable(model, toy: ToyData) -> bool:
    """Whether :func:`oracle_keys` measures anything: the task has an exact oracle and
    ``model`` is one PyTorch model."""
    return oracle_task(None, "", toy.task) is not None and single_model(model) is not None


def _pooled_rate(rates, counts) -> float:
    """Percent: sum of ``rate * count`` over the positions, over the sum of ``count``."""
    n = sum(counts)
    hits = sum(r * k for r, k in zip(rates, counts) if k)
    return 100.0 * hits / n if n else float("nan")


def _null_nan(xs):
    return [None if isinstance(x, float) and math.isnan(x) else x for x in xs]


def summary_keys(task: str, split: str, curves: Dict[str, Any],
                 injection: Dict[str, Dict[str, float]]) -> Dict[str, Any]:
    """The module's keys from :func:`~seq2seq.compare.oracle.measure`'s entry for one set
    (``curves``) and :func:`~seq2seq.compare.injection.probe`'s result (``injection``)."""
    out: Dict[str, Any] = {
        "exaccerr_task": task, "exaccerr_set": split,
        "exaccerr_n": curves["n"][0] if curves["n"] else 0,
        "exaccerr_total": curves["exaccerr_total"],
        "exaccerr_total_pct": curves["exaccerr_total_pct"]}
    if "err_after" in curves:
        out["exaccerr_error_before_first"] = _pooled_rate(curves["err_clean"], curves["n_clean"])
        out["exaccerr_error_after_first"] = _pooled_rate(curves["err_after"], curves["n_after"])
    out["exaccerr_by_position"] = {k: _null_nan(v) for k, v in curves.items()
                                   if isinstance(v, list)}
    for key, stats in injection.items():
        out.update({f"injection_{key}_{stat}": v for stat, v in stats.items()
                    if isinstance(v, (int, float))})
    return out


def oracle_keys(model, tok, cfg, split: str, toy: ToyData, device) -> Dict[str, Any]:
    """The module's keys for ``split`` of a toy run's data; ``{}`` when the task has no exact
    oracle (:func:`seq2seq.compare.oracle.oracle_task`), the split is empty or ``model`` is not
    one PyTorch model."""
    from seq2seq.data.batching import encode_pairs
    from seq2seq.decoding.evaluate import read_split

    if not measurable(model, toy):
        return {}
    task, net = oracle_task(None, "", toy.task), single_model(model)
    data = encode_pairs(tok, read_split(cfg, split, toy.dataset))
    if not len(data.tgt):
        return {}
    batch = cfg.decode.batch_size
    curves = measure(net, {split: data}, batch, device, task=task)[split]
    return summary_keys(task, split, curves,
                        probe(net, data, batch, device, ts=POSITIONS, task=task))


def format_oracle(keys: Dict[str, Any]) -> str:
    """A few lines for people: ExAccErr and the error rates around the first error; per
    injection position, the suffix accuracy per k and kind against the clean run."""
    lines = [f"exposure bias against the exact oracle (toy task {keys['exaccerr_task']}, "
             f"{keys['exaccerr_set']}, {keys['exaccerr_n']} outputs): ExAccErr "
             f"{keys['exaccerr_total']:.4f} nats per output ({keys['exaccerr_total_pct']:.1f}% "
             "of the free-running loss)"
             + (f"; greedy error rate {keys['exaccerr_error_before_first']:.2f}% before the "
                f"first error, {keys['exaccerr_error_after_first']:.2f}% after it"
                if "exaccerr_error_after_first" in keys else "")]
    by_t: Dict[str, Dict[str, list]] = {}  # position t -> k -> [(how, accuracy)]
    for key, v in keys.items():
        m = re.fullmatch(r"injection_(\w+?)_(\d+)(?:_t(\d+))?_acc", key)
        if m:
            t = m.group(3) or keys.get(key[:-len("acc")] + "t", "?")
            by_t.setdefault(str(t), {}).setdefault(m.group(2), []).append((m.group(1), v))
    if by_t:
        lines.append("error injection: suffix token accuracy % against the oracle after k "
                     "wrong tokens forced at position t (gold: the clean run)")
    for t, ks in by_t.items():
        lines.append(f"  t={t}: " + "; ".join(
            f"k={k} " + " ".join(f"{how} {v:.1f}" for how, v in hv) for k, hv in ks.items()))
    return "\n".join(lines)


def plot_oracle(keys: Dict[str, Any], seed, path, title: str) -> None:
    """:func:`seq2seq.compare.oracle_plots.plot` of the keys' curves (one set, one run)."""
    from .oracle_plots import plot

    c = keys["exaccerr_by_position"]
    nan = lambda x: float("nan") if x is None else x
    rows = [{"set": keys["exaccerr_set"], "seed": seed, "position": l + 1,
             **{k: nan(v[l]) for k, v in c.items()}} for l in range(len(c["n"]))]
    plot(keys["exaccerr_task"], rows, Path(path), title)
