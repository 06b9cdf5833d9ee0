"""Reverse a sequence of symbols ("a c b" -> "b c a"), or copy it (``--task copy``).

The data is generated here from ``--data-seed`` (see ``toy_tasks.reverse``): 20,000 training
sequences of 3 to 15 symbols drawn from 20 letters, 500 for validation and 1,000 for test, no
sequence in two splits. Then the usual path: sentencepiece, training, greedy decoding of the
test split, sacreBLEU and exact match, written to ``OUT/scores.json``.

    python recipes/reverse.py --out runs/reverse
    python recipes/reverse.py --task copy --out runs/copy
    python recipes/reverse.py --out runs/reverse-gru --set model.cell=gru
"""

import sys
from pathlib import Path

import toy_tasks
from seq2seq import recipe

HERE = Path(__file__).resolve().parent


def build_parser():
    p = recipe.parser(__doc__, HERE / "reverse.yaml", "runs/reverse")
    p.add_argument("--task", choices=("reverse", "copy"), default="reverse",
                   help="reverse the sequence (default) or copy it unchanged")
    p.add_argument("--data-seed", type=int, default=1, metavar="N",
                   help="seed of the generated data (default: 1)")
    return p


def main(args) -> None:
    cfg = recipe.load_config(args)
    dataset = toy_tasks.reverse(seed=args.data_seed, task=args.task)
    recipe.run(cfg, args.out, dataset=dataset, resume=args.resume,
               progress=not args.no_progress)


if __name__ == "__main__":
    args = build_parser().parse_args()
    if args.task == "copy" and args.out == "runs/reverse":  # the default folder names the task
        args.out = "runs/copy"
    sys.exit(recipe.main(main, args))
