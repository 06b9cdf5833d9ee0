"""What a user at a terminal sees and does: one-line messages, Ctrl-C, and errors.

Every entry point (``seq2seq COMMAND``, ``recipes/*.py``, ``scripts/compare_teacher_forcing.py``)
runs through :func:`run_main`, so an error a user can fix always reads
``PROG: error: MESSAGE`` on one line of stderr with exit status 2 (``--debug``: the traceback),
and an interrupt exits with 130 and says how to continue.
"""

import os
import signal
import sys
from typing import Callable, Optional

from tqdm import tqdm

from seq2seq.errors import UserError


def log(msg: str) -> None:
    """A message on stderr that does not break a progress bar that is being drawn."""
    tqdm.write(msg, file=sys.stderr)


def quiet(msg: str) -> None:
    """:func:`log` for the processes of a distributed run other than rank 0: nothing."""


def one_line(e: BaseException) -> str:
    """A UserError's message, or an OSError's reason and file name, on one line."""
    if isinstance(e, UserError):
        msg = str(e)
    else:
        msg = f"{getattr(e, 'strerror', None) or e}" + (
            f": {e.filename}" if getattr(e, "filename", None) else "")
    return " ".join(l.strip() for l in msg.splitlines() if l.strip())


def run_main(prog: str, fn: Callable[[], object], debug: bool = False,
             resume_hint: str = "") -> int:
    """Run ``fn()`` with the toolkit's error handling; its exit status is what ``fn`` returns
    when that is an int, else 0.

    ``UserError`` and ``OSError`` (a file that cannot be read or written) print
    ``PROG: error: MESSAGE`` on one line (``debug``: re-raised with its traceback) and give 2;
    Ctrl-C gives 130 with ``resume_hint``; a closed pipe (``... | head``) ends quietly.
    """
    try:
        rc = fn()
        return rc if isinstance(rc, int) else 0
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UserError, OSError) as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted" + (f"; {resume_hint}" if resume_hint else ""),
              file=sys.stderr)
        return 130


class StopSignal:
    """While active, SIGINT/SIGTERM only set :attr:`signal`; the training loop checks it after
    each step, saves a checkpoint and stops. A second Ctrl-C stops at once."""

    def __init__(self, log_fn: Callable[[str], None] = log) -> None:
        self.signal: Optional[int] = None
        self._log = log_fn
        self._old = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        self._log(f"\n{signal.Signals(signum).name}: saving a checkpoint at the end of this "
                  "step ...")

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
