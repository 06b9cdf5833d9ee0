#!/usr/bin/env python
"""Load test of ``seq2seq serve``: latency (p50, p99) and throughput for 1, 8 and 32 concurrent
clients, each sending one sentence per request, on 127.0.0.1 only.

    python scripts/bench_serve.py --checkpoint runs/m30k/best.pt          # PyTorch
    python scripts/bench_serve.py --checkpoint deploy/m30k-int8           # an exported model

Starts the server itself (``--port 0``, one model thread), sends ``--requests`` requests per
level of concurrency (sentences of Multi30k's test_2016_flickr from --data-dir, else synthetic
ones), bounded in number and time, and stops it.
"""

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "multi30k"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start(checkpoint, extra):
    p = subprocess.Popen([sys.executable, "-m", "seq2seq", "serve", "--checkpoint",
                          str(checkpoint), "--port", "0", *extra], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if " on http://" in line:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, line.split(" on ")[1].split()[0].rstrip("/")
    raise SystemExit(f"the server did not start (exit {p.wait()})")


def post(url, sentences, beam):
    body = json.dumps({"text": sentences, "beam": beam}).encode()
    req = urllib.request.Request(url + "/translate", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with OPENER.open(req, timeout=120) as r:
        json.loads(r.read())
    return time.perf_counter() - t0


def level(url, lines, clients, n, beam):
    per = max(1, n // clients)
    rng = random.Random(clients)
    work = [[[rng.choice(lines)] for _ in range(per)] for _ in range(clients)]

    def client(reqs):
        return [post(url, r, beam) for r in reqs]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = [x for chunk in pool.map(client, work) for x in chunk]
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100)
    return {"clients": clients, "requests": len(lat), "p50 ms": round(1e3 * q[49], 1),
            "p99 ms": round(1e3 * q[98], 1), "requests/s": round(len(lat) / wall, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a checkpoint or an exported folder")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=320, help="requests per level")
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--batch-window-ms", default="10")
    args = ap.parse_args()
    src = args.data_dir / "test_2016_flickr.de"
    lines = (src.read_text(encoding="utf-8").splitlines() if src.is_file() else
             [" ".join(f"w{random.randint(0, 999)}" for _ in range(12)) for _ in range(1000)])
    p, url = start(args.checkpoint, ["--batch-window-ms", args.batch_window_ms])
    try:
        post(url, lines[:4], args.beam)  # warm up
        rows = [level(url, lines, c, args.requests, args.beam) for c in args.clients]
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    print(f"seq2seq serve --checkpoint {args.checkpoint}, beam {args.beam}, one sentence per "
          f"request, window {args.batch_window_ms} ms")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
