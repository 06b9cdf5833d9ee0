"""``seq2seq convert-checkpoint``: a checkpoint one trusts, rewritten once as tensors and plain
data, so that every command can load it without running code (no torch import at declaration).
"""

import argparse
import sys

EPILOG = """A checkpoint is read with torch.load(weights_only=True): tensors and plain data only, so
a file crafted to run code when opened is refused before anything in it runs. A checkpoint that
holds other Python objects (written by another tool, or edited by hand) is refused the same way.
If you trust where such a file comes from, this command reads it once with the full unpickler
(which runs whatever code the file carries: only for a file you trust, hence --trusted), keeps
its tensors and plain data (dataclasses become dicts, enums their values, numpy arrays tensors),
drops the rest (listed on stderr), and writes a checkpoint every command loads safely.

examples:
  seq2seq convert-checkpoint old/best.pt --out converted.pt --trusted
  seq2seq translate --checkpoint converted.pt < test.de"""


def run_convert(args) -> int:
    from seq2seq.errors import UserError
    from seq2seq.training.checkpoint import convert

    if not args.trusted:
        raise UserError(f"convert-checkpoint reads {args.checkpoint} with the full unpickler, "
                        "which runs any code the file carries: add --trusted if you trust where "
                        "the file comes from")
    dropped = convert(args.checkpoint, args.out)
    for what in dropped:
        print(f"dropped {what}: not tensors or plain data", file=sys.stderr)
    print(f"wrote {args.out}: tensors and plain data only, loads without running code",
          file=sys.stderr)
    return 0


def add_convert_command(sub) -> None:
    """``convert-checkpoint``, on the subparsers ``sub`` of ``seq2seq``."""
    c = sub.add_parser("convert-checkpoint",
                       help="rewrite a checkpoint you trust as tensors and plain data (once)",
                       description="Rewrite a trusted checkpoint that holds Python objects as "
                                   "tensors and plain data, which every command loads without "
                                   "running code.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    c.add_argument("checkpoint", metavar="OLD", help="the checkpoint file (or run folder) to "
                   "convert; it is left as it is")
    c.add_argument("--out", required=True, metavar="NEW.pt", help="where to write the "
                   "converted checkpoint")
    c.add_argument("--trusted", action="store_true", help="confirm that you trust the file: "
                   "reading it runs any code it carries")
    c.add_argument("--debug", action="store_true", help="show the traceback of an error")
    c.set_defaults(fn=run_convert)
