"""TensorBoard event files for a run (``train.tensorboard: true``), written into its folder.

    tensorboard --logdir runs/            # every run folder under runs/ is one run
    tensorboard --logdir runs/ctf/runs    # compare-tf: one run per setting and seed, overlaid

At every validation the record that goes to ``metrics.jsonl`` goes here too, each number under
its own name (``train_loss``, ``valid_loss``, ``valid_bleu``, ``valid_chrf``, ``lr``,
``tf_ratio``, ``tokens_per_s``, ...) at the record's step, with a few validation translations
as a text table. A resumed run hides what the killed run had logged after its checkpoint
(``purge_step``). The ``tensorboard`` package is optional: :func:`require` says how to get it.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional

from seq2seq.errors import UserError

EXAMPLES = 3  # validation translations shown per validation


def require() -> None:
    """Raise a one-line UserError when ``torch.utils.tensorboard`` cannot be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise UserError(f"train.tensorboard: true needs the tensorboard package, which is not "
                        f"installed ({e.__class__.__name__}): pip install tensorboard, or set "
                        "train.tensorboard: false") from None


def examples_table(examples: List[Dict[str, str]]) -> str:
    """Translations as a Markdown table (what TensorBoard's text tab renders)."""
    cell = lambda s: s.replace("|", "\\|").replace("\n", " ") or " "
    rows = ["| source | output | reference |", "|---|---|---|"]
    rows += [f"| {cell(e['source'])} | {cell(e['output'])} | {cell(e['reference'])} |"
             for e in examples]
    return "\n".join(rows)


class TensorBoardLog:
    """The event files of one run folder.

    Args:
        folder: the run folder (the event files go straight into it, so that TensorBoard
            names the run after the folder).
        purge_step: hide events of earlier files at this step and later (a resumed run).
    """

    def __init__(self, folder: Path, purge_step: Optional[int] = None) -> None:
        require()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def write(self, record: Dict[str, Any], examples: Optional[List[Dict[str, str]]] = None
              ) -> None:
        """Every number of a ``metrics.jsonl`` record at its ``step``; ``examples``: a few
        validation translations (dicts of source, output, reference)."""
        step = record["step"]
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        if examples:
            self.writer.add_text("validation_translations", examples_table(examples), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
