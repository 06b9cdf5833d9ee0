"""Multi30k German -> English: sentencepiece BPE, bi-LSTM encoder with attention, greedy, sacreBLEU.

    python recipes/multi30k.py --out runs/multi30k                     # bentrevett/multi30k from the hub
    python recipes/multi30k.py --data-dir DIR --out runs/multi30k      # raw Multi30k files in DIR
    python recipes/multi30k.py --quick --data-dir DIR --out runs/q     # about 15 minutes

Scores test_2016_flickr (the hub's "test" split) with sacreBLEU BLEU and chrF and writes
DIR/scores.json. See multi30k.yaml for the model and training settings.
"""

import sys
from pathlib import Path

from seq2seq import recipe
from seq2seq.errors import UserError

HERE = Path(__file__).resolve().parent
QUICK = ["train.max_minutes=15", "train.patience=0", "train.keep_last=0",
         "model.hidden_size=256", "model.input_feeding=false", "model.embedding_dim=256"]


def local_files(data_dir: str):
    """Overrides that read the raw Multi30k files (train.de/en, val.de/en, test_2016_flickr.de/en)."""
    d = Path(data_dir)
    files = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
    for stem in files.values():
        for lang in ("de", "en"):
            if not (d / f"{stem}.{lang}").is_file():
                raise UserError(f"--data-dir {d}: {stem}.{lang} is missing (expected the raw "
                                "Multi30k files train.*, val.*, test_2016_flickr.*)")
    data_files = "{" + ", ".join(f"{split}: [{d / stem}.de, {d / stem}.en]"
                                 for split, stem in files.items()) + "}"
    return ["data.path=text", f"data.data_files={data_files}"]


def main(args) -> None:
    extra = (local_files(args.data_dir) if args.data_dir else []) + (QUICK if args.quick else [])
    cfg = recipe.load_config(args, extra)
    recipe.run(cfg, args.out, resume=args.resume, progress=not args.no_progress)


if __name__ == "__main__":
    p = recipe.parser(__doc__, HERE / "multi30k.yaml", "runs/multi30k")
    p.add_argument("--data-dir", metavar="DIR",
                   help="read the raw Multi30k files from DIR instead of the hub")
    p.add_argument("--quick", action="store_true",
                   help="a 15-minute training budget (reaches about 25+ BLEU)")
    sys.exit(recipe.main(main, p.parse_args(), "multi30k.py"))
