"""The ``--settings`` mini-language: one teacher-forcing setting per word, and what it does.

    constant:0.5    linear    inverse_sigmoid:k=20,min=0.1    constant:0.5,feed=uniform
    bengio    always-sampling    zhang-word:k=5

A setting names a schedule and any ``teacher_forcing`` keys, or a preset (``PRESETS``: the
arms the papers ran) and keys that override the preset's (see ``seq2seq compare-tf
--help``); :func:`apply_setting` turns it into a run's config, checked by the config's own
rules, and :func:`schedule_summary` says what the schedule does over the run.
"""

import dataclasses
import difflib
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from seq2seq import config
from seq2seq.errors import UserError
from seq2seq.training import teacher_forcing as sched

from .options import OTHER_KEYS, PRESETS, SCHEDULES, SETTING_KEYS


class Setting(NamedTuple):
    """One teacher-forcing setting: its label and the teacher_forcing keys it sets."""

    label: str  # canonical form, e.g. "constant:0.5" or "inverse_sigmoid:k=20"
    keys: Dict[str, Any]  # teacher_forcing overrides, always with "schedule"


def _value(raw: str):
    """``"20"`` -> 20, ``"1e-3"`` -> 0.001, ``"true"`` -> True, anything else stays a string
    (``"sample"``)."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for number in (int, float):
        try:
            return number(raw)
        except ValueError:
            pass
    return raw


def parse_setting(text: str) -> Setting:
    """``"constant:0.5"``, ``"linear"``, ``"inverse_sigmoid:k=20,min=0.1"``, ``"bengio"``,
    ``"bengio:k=50"`` -> :class:`Setting`.

    Values are checked against the config's rules (types and ranges) by the caller's
    :func:`apply_setting`; this checks the syntax, the schedule or preset name and the key
    names. A preset's keys are all in ``keys``; those given after its colon override them.
    """
    def bad(msg):
        raise UserError(f"--settings {text!r}: {msg}")

    name, _, rest = text.strip().partition(":")
    if name not in SCHEDULES and name not in PRESETS:
        names = (*SCHEDULES, *PRESETS)
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        bad(f"unknown schedule {name!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                           f" (known: {', '.join(names)})"))
    preset = PRESETS.get(name, {})
    keys: Dict[str, Any] = {"schedule": name, **preset}
    given: List[str] = []  # the keys after the colon, in order
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
        if key in given:
            bad(f"{key} is given twice")
        if not raw.strip():
            bad(f"{key} has no value")
        given.append(key)
        keys[key] = _value(raw.strip())
    label = name
    params = [(k, keys[k]) for k in given]
    if params:
        if name == "constant" and params[0][0] == "ratio":
            label += f":{params[0][1]}" + "".join(f",{k}={v}" for k, v in params[1:])
        else:
            label += ":" + ",".join(f"{k}={v}" for k, v in params)
    return Setting(label, keys)


def run_slug(label: str) -> str:
    """The folder name of a setting's runs, OUT/runs/SLUG (``constant:1.0`` -> ``constant-1.0``,
    ``bengio:feed=uniform`` -> ``bengio-feeduniform``)."""
    return label.replace(":", "-").replace(",", "-").replace("=", "")


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
    own = {k: v for k, v in setting.keys.items() if k not in OTHER_KEYS}
    tf = {**dataclasses.asdict(cfg.teacher_forcing), "k": None, "c": None, **own}
    train = {**dataclasses.asdict(cfg.train), "seed": seed,
             **{k: v for k, v in setting.keys.items() if OTHER_KEYS.get(k) == "train"}}
    try:  # each section checked by its own rules, then the whole config by the cross-checks
        sections = config.from_dict({"teacher_forcing": tf, "train": train})
        run = cfg.replace(teacher_forcing=sections.teacher_forcing, train=sections.train)
        return config.from_dict(run.to_dict())
    except UserError as e:
        raise UserError(f"--settings {setting.label}: {e}") from None


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


def lr_schedule_warning(cfg) -> Optional[str]:
    """One line when the base config's learning rate follows ``train.lr_schedule: plateau``,
    which halves it when each run's *own* validation stalls: the arms then train with
    different learning rates, a confound of the comparison. None for a fixed schedule."""
    if cfg.train.lr_schedule != "plateau":
        return None
    return ("warning: train.lr_schedule is plateau: each run's learning rate reacts to its own "
            "validation, a confound across settings; a fixed schedule compares them at equal "
            "learning rates: --set train.lr_schedule=constant (or cosine)")
