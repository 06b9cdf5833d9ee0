"""The command lines of ``seq2seq export`` and ``seq2seq serve`` (deployment), and what they run.

Declared here, without importing torch, onnx or starlette, so that ``seq2seq --help`` stays
quick; :func:`add_deploy_commands` adds both to ``seq2seq``'s subcommands.
"""

import argparse
import sys

from .decode_options import count, nonnegative, positive

EPILOG_EXPORT = """examples:
  seq2seq export --checkpoint runs/my --out deploy/my              # float32
  seq2seq export --checkpoint runs/my --out deploy/my-int8 --int8  # int8 matrix products
  seq2seq translate --checkpoint deploy/my --beam 5 < test.de       # decode with ONNX Runtime

The folder holds encoder.onnx, decoder_start.onnx (attention keys), decoder_step.onnx (one
step, the state as named tensors), the sentencepiece models, config.yaml and export.json
(versions, each graph's inputs and outputs, the export check). Needs onnx and onnxruntime:
pip install 'seq2seq[deploy]'."""

EPILOG_SERVE = """examples:
  seq2seq serve --checkpoint deploy/my                     # then open http://127.0.0.1:8000/
  curl -s localhost:8000/translate -d '{"text": ["Ein Hund läuft."], "beam": 5}'
  curl -s localhost:8000/translate -d '{"text": ["Ein Hund."], "attention": true, "scores": true}'

Requests: {"text": [sentences], "beam": N, "attention": bool, "scores": bool}; only "text" is
required; a request's cost, its beam times its characters, is at most --max-request-cost.
Errors are a 4xx/5xx status with {"error": "one line"}; Ctrl-C stops the server.
Needs starlette and uvicorn: pip install 'seq2seq[deploy]'."""


def run_export(args) -> int:
    from seq2seq.deploy.export import export
    from seq2seq.kernels.device import set_threads

    set_threads(args.threads)
    info = export(args.checkpoint, args.out, args.int8, args.overwrite, args.check_sentences,
                  args.check_input, log=lambda m: print(m, file=sys.stderr))
    sizes = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in info["bytes"].items() if k != "total")
    print(f"exported {'int8' if args.int8 else 'float32'} ONNX graphs to {args.out} ({sizes}; "
          f"{info['bytes']['total'] / 1e6:.1f} MB in all); translate with: seq2seq translate "
          f"--checkpoint {args.out}", file=sys.stderr)
    return 0


def run_serve(args) -> int:
    from seq2seq.deploy.server import Limits, serve

    limits = Limits(max_chars=args.max_chars, max_sentences=args.max_sentences,
                    max_beam=args.max_beam, timeout=args.timeout,
                    max_cost=args.max_request_cost)
    return serve(args.checkpoint, args.host, args.port, args.impl, args.device, args.threads,
                 limits, args.batch_window_ms / 1000, args.access_log)


def add_deploy_commands(sub) -> None:
    """``export`` and ``serve``, on the subparsers ``sub`` of ``seq2seq``."""
    raw = argparse.RawDescriptionHelpFormatter
    x = sub.add_parser("export", help="export a checkpoint as ONNX graphs for ONNX Runtime "
                       "(float32 or int8)",
                       description="Write the encoder and one decoder step as ONNX graphs "
                                   "(dynamic batch and source length), the tokenizer and the "
                                   "decode settings into a folder that 'translate', 'evaluate' "
                                   "and 'serve' take as --checkpoint; then decode a few "
                                   "sentences both ways to check the export.",
                       epilog=EPILOG_EXPORT, formatter_class=raw)
    x.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                   help="a run folder (uses best.pt, else last.pt) or a .pt file")
    x.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    x.add_argument("--int8", action="store_true",
                   help="store the weights of the matrix products, LSTM layers and "
                        "embeddings in int8 (ONNX Runtime's dynamic quantization): about 3x "
                        "smaller and faster, outputs differ slightly")
    x.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    x.add_argument("--check-sentences", type=count(1), default=20, metavar="N",
                   help="sentences decoded both ways to check the export (default: 20, from "
                        "the validation split when its data is there)")
    x.add_argument("--check-input", metavar="FILE", help="take the check's sentences from FILE")
    x.add_argument("--threads", type=count(0), default=0,
                   help="torch threads (0: default)")
    x.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    x.set_defaults(fn=run_export)

    v = sub.add_parser("serve", help="a translation server (HTTP, JSON) with a web page",
                       description="Serve translations over HTTP: POST /translate, GET /health, "
                                   "and a web page at / (a text box, the translation, the "
                                   "attention heatmap, the model's settings). Concurrent "
                                   "requests are decoded together.",
                       epilog=EPILOG_SERVE, formatter_class=raw)
    v.add_argument("--checkpoint", required=True, metavar="DIR_OR_FILE",
                   help="a run folder, a .pt file, or a folder written by 'seq2seq export'")
    v.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    v.add_argument("--port", type=count(0), default=8000,
                   help="port (default: 8000; 0: any free port, printed at start)")
    v.add_argument("--impl", choices=["manual", "fused"],
                   help="PyTorch checkpoints: decode with this layer implementation")
    v.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    v.add_argument("--threads", type=count(1), default=1,
                   help="threads of the model's calls (one decoding thread makes them; "
                        "default: 1)")
    v.add_argument("--batch-window-ms", type=nonnegative, default=10, metavar="MS",
                   help="once a request waits, wait this long for more to decode together "
                        "(default: 10)")
    v.add_argument("--timeout", type=positive, default=30,
                   metavar="SECONDS", help="answer 503 when a request waited this long for its "
                                           "translations, and stop decoding it (default: 30)")
    v.add_argument("--max-sentences", type=count(1), default=64, metavar="N",
                   help="sentences per request (default: 64)")
    v.add_argument("--max-chars", type=count(1), default=1000, metavar="N",
                   help="characters per sentence (default: 1000)")
    v.add_argument("--max-beam", type=count(1), default=10, metavar="N",
                   help="the widest beam a request may ask for (default: 10)")
    v.add_argument("--max-request-cost", type=count(1), default=50_000, metavar="N",
                   help="refuse (413) a request whose beam times its characters (summed over "
                        "its sentences) is over N, before it is decoded: one request holds the "
                        "decoding thread for a bounded time (default: 50000, e.g. 10 "
                        "sentences of 500 characters at beam 10)")
    v.add_argument("--access-log", action="store_true", help="log every request on stderr")
    v.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    v.set_defaults(fn=run_serve)
