"""The ``--settings`` mini-language: one teacher-forcing setting per word, and what it does.

    constant:0.5    linear    inverse_sigmoid:k=20,min=0.1    constant:0.5,feed=sample

A setting names a schedule and any ``teacher_forcing`` keys (see ``seq2seq compare-tf
--help``); :func:`apply_setting` turns it into a run's config, checked by the config's own
rules, and :func:`schedule_summary` says what the schedule does over the run.
"""

import dataclasses
import difflib
from typing import Any, Dict, List, NamedTuple, Sequence

from seq2seq import config
from seq2seq.errors import UserError
from seq2seq.training import teacher_forcing as sched

from .options import SCHEDULES, SETTING_KEYS


class Setting(NamedTuple):
    """One teacher-forcing setting: its label and the teacher_forcing keys it sets."""

    label: str  # canonical form, e.g. "constant:0.5" or "inverse_sigmoid:k=20"
    keys: Dict[str, Any]  # teacher_forcing overrides, always with "schedule"


def _value(raw: str):
    """``"20"`` -> 20, ``"1e-3"`` -> 0.001, anything else stays a string (``"sample"``)."""
    for number in (int, float):
        try:
            return number(raw)
        except ValueError:
            pass
    return raw


def parse_setting(text: str) -> Setting:
    """``"constant:0.5"``, ``"linear"``, ``"inverse_sigmoid:k=20,min=0.1"`` -> :class:`Setting`.

    Values are checked against the config's rules (types and ranges) by the caller's
    :func:`apply_setting`; this checks the syntax, the schedule name and the key names.
    """
    def bad(msg):
        raise UserError(f"--settings {text!r}: {msg}")

    name, _, rest = text.strip().partition(":")
    if name not in SCHEDULES:
        close = difflib.get_close_matches(name, SCHEDULES, n=1, cutoff=0.5)
        bad(f"unknown schedule {name!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                           f" (known: {', '.join(SCHEDULES)})"))
    keys: Dict[str, Any] = {"schedule": name}
    for n, part in enumerate([p.strip() for p in rest.split(",")] if rest.strip() else []):
        if "=" not in part:
            if name == "constant" and n == 0:
                part = f"ratio={part}"  # constant:0.5 is constant:ratio=0.5
            else:
                bad(f"expected key=value after the colon, got {part!r} (keys: "
                    f"{', '.join(SETTING_KEYS)})")
        key, _, raw = part.partition("=")
        key = key.strip()
        if key not in SETTING_KEYS:
            close = difflib.get_close_matches(key, SETTING_KEYS, n=1, cutoff=0.5)
            bad(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                         f" (keys: {', '.join(SETTING_KEYS)})"))
        if key in keys:
            bad(f"{key} is given twice")
        if not raw.strip():
            bad(f"{key} has no value")
        keys[key] = _value(raw.strip())
    label = name
    params = [(k, v) for k, v in keys.items() if k != "schedule"]
    if params:
        if name == "constant" and params[0][0] == "ratio":
            label += f":{params[0][1]}" + "".join(f",{k}={v}" for k, v in params[1:])
        else:
            label += ":" + ",".join(f"{k}={v}" for k, v in params)
    return Setting(label, keys)


def parse_settings(texts: Sequence[str]) -> List[Setting]:
    """Parse every setting (a list item may hold several, space-separated); no duplicates."""
    out: List[Setting] = []
    for t in (s for text in texts for s in text.split()):
        s = parse_setting(t)
        if any(s.label == o.label for o in out):
            raise UserError(f"--settings: {s.label} is given twice")
        out.append(s)
    if not out:
        raise UserError("--settings: give at least one setting, e.g. constant:1.0")
    return out


def apply_setting(cfg, setting: Setting, seed: int):
    """The config of one run: the base config with this setting's teacher forcing and seed.

    Schedule parameters ``k`` and ``c`` are not inherited from the base config (they mean
    different things per schedule); ``ratio``, ``min``, ``unit`` and ``feed`` are.
    """
    tf = {**dataclasses.asdict(cfg.teacher_forcing), "k": None, "c": None, **setting.keys}
    try:
        tf_cfg = config.from_dict({"teacher_forcing": tf}).teacher_forcing
    except UserError as e:
        raise UserError(f"--settings {setting.label}: {e}") from None
    return cfg.replace(teacher_forcing=tf_cfg, train=dataclasses.replace(cfg.train, seed=seed))


def schedule_summary(tf, steps_per_epoch: int, total_steps: int, epochs: int) -> Dict[str, Any]:
    """The schedule's parameters as the training loop resolves them, its ratio at every step
    of the run (:func:`seq2seq.training.teacher_forcing.ratio_for`, as the loop calls it; at 2,000 evenly
    spaced steps of a longer run), at the start and the end, and its mean over the run."""
    params = sched.params(tf, total_steps if tf.unit == "step" else epochs)
    n = max(1, total_steps)  # every step, or 2,000 evenly spaced ones of a long run
    steps = list(range(n)) if n <= 2000 else sorted({i * (n - 1) // 1999 for i in range(2000)})
    ratios = [sched.ratio_for(tf, i, i // max(1, steps_per_epoch), total_steps, epochs)
              for i in steps]
    if tf.schedule == "constant":
        desc = f"ratio={tf.ratio:g}"
    else:
        if tf.schedule == "inverse_sigmoid" and params["c"] == 1:
            del params["c"]  # the paper's speed: not worth a word
        desc = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
        if tf.schedule in ("linear", "exponential") or tf.min:
            desc += f", min={tf.min:g}"
    if tf.unit != "step":
        desc += f", per {tf.unit}"
    if tf.feed != "argmax":
        desc += f", feed={tf.feed}"
    return {"schedule": desc, "ratio_start": ratios[0], "ratio_end": ratios[-1],
            "ratio_mean": sum(ratios) / len(ratios), "ratios": ratios,
            "ratio_steps": [i + 1 for i in steps]}
