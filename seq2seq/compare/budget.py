"""What every run of a comparison gets: its budget (``--budget``), or the two stages of the
fine-tuning design (``--fine-tune``: a teacher-forced model per seed, then every arm from it).
"""

import dataclasses
from typing import List

from seq2seq.errors import UserError


def with_budget(cfg, budget: str):
    """The base config with what ``--budget`` gives every run (see its ``--help``)."""
    t = cfg.train
    if budget == "steps":  # the same updates for every run: nothing may stop one earlier
        t = dataclasses.replace(t, patience=0, max_minutes=None)
    elif budget == "minutes":  # the steps stay a cap, and the horizon of the schedules
        if not t.max_minutes:
            raise UserError("--budget minutes gives every run train.max_minutes of training: "
                            "set it, e.g. --set train.max_minutes=10")
        t = dataclasses.replace(t, patience=0)
    else:  # converge: validation BLEU decides, within the config's caps
        t = dataclasses.replace(t, patience=t.patience or 5)
    return cfg.replace(train=t)


def budget_text(cfg, budget: str, total: int) -> str:
    t = cfg.train
    if budget == "steps":
        return f"{total} steps each"
    if budget == "minutes":
        return (f"{t.max_minutes:g} minutes of training each (at most {total} steps, the "
                "schedules' horizon)")
    caps = [f"{total} steps"] + ([f"{t.max_minutes:g} minutes"] if t.max_minutes else [])
    return f"each until {t.patience} validations without a BLEU gain, at most {' or '.join(caps)}"


def fine_tune_config(cfg, steps: int, steps_per_epoch: int):
    """The arms' base config under ``--fine-tune STEPS``: exactly ``STEPS`` updates (nothing
    stops a run earlier), over as many epochs as they take (the horizon of per-epoch
    schedules)."""
    t = dataclasses.replace(cfg.train, max_steps=steps, patience=0, max_minutes=None,
                            epochs=max(1, -(-steps // max(1, steps_per_epoch))))
    return cfg.replace(train=t)


def design_text(cfg, args, pre_total: int, total: int) -> str:
    """What every run gets, in words: the budget, or the two stages of ``--fine-tune``."""
    if not args.fine_tune:
        return budget_text(cfg, args.budget, total)
    return (f"{total} fine-tuning steps each from its seed's teacher-forced {args.checkpoint}.pt "
            f"(pretrained: {budget_text(cfg, args.budget, pre_total)})")


def pretrained_text(pretrained: List[dict]) -> str:
    """The report's line on the models of stage 1 (``--fine-tune``), if any."""
    if not pretrained:
        return ""
    mean = lambda k: sum(r[k] for r in pretrained) / len(pretrained)
    return (f"\n- pretrained (stage 1, teacher forcing; pretrained.csv): BLEU {mean('bleu'):.2f}, "
            f"exact match {mean('exact_match'):.1f}%, {mean('steps'):.0f} steps on average over "
            f"{len(pretrained)} seed(s); every arm of a seed starts from its checkpoint")


def refuse_untrained_mrt(cfg, plan, fine_tune) -> None:
    """Minimum risk training alone (``mrt.mle_weight`` 0) learns from the model's own samples,
    which an untrained model cannot give: a run of ``plan`` (``(setting, seed, config)``) that
    would train so from scratch is refused with one line, as is a ``--fine-tune`` stage 1 with
    the config's ``train.objective`` mrt (``seq2seq train`` refuses the same without
    ``--init-from``)."""
    alone = lambda c: c.train.objective == "mrt" and c.mrt.mle_weight == 0
    if fine_tune and alone(cfg):
        raise UserError("train.objective mrt: stage 1 of --fine-tune trains from scratch with "
                        "the config's objective, and MRT learns from the model's own samples, "
                        "which an untrained model cannot give: make MRT an arm (--settings mrt, "
                        "or --fine-tune-set train.objective=mrt)")
    untrained = [s.label for s, _, c in plan if alone(c) and not fine_tune]
    if untrained:
        raise UserError(f"setting {untrained[0]}: train.objective mrt learns from the model's own "
                        "samples, which an untrained model cannot give: run it as fine-tuning "
                        "(--fine-tune STEPS), or --set mrt.mle_weight=0.5")
