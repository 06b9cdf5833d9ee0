"""``seq2seq serve``: a translation server (Starlette on uvicorn) and its web page.

    POST /translate  {"text": ["Ein Hund läuft.", ...], "beam": 5, "attention": true, "scores": true}
                     -> {"translations": [...], "scores": [...], "attention": [...]}
    GET  /health     -> {"status": "ok", the engine, the model's settings, the limits, counters}
    GET  /           the page: a text box, the translation, the attention heatmap of the last
                     sentence, the model's settings (one HTML file, no external assets)

``beam`` (default: the checkpoint's ``decode.beam``), ``attention`` and ``scores`` (default
false) are optional. ``scores``: per sentence ``log P(output + EOS | source)`` (null for an
empty line). ``attention``:
per sentence ``{"source": pieces, "output": pieces + ["</s>"], "weights": rows x columns}``,
null for an empty line or a model without attention. Concurrent requests are decoded together
(:mod:`seq2seq.deploy.batcher`).

Every error is a 4xx or 5xx with one line of JSON, ``{"error": "..."}``, and the server goes
on serving: 400 for a body that is not UTF-8 or not JSON, a missing, unknown or mistyped field,
an empty list; 413 for a body, a text or a list over the limits; 404/405 for another path or
method; 503 when the request waited longer than ``timeout`` seconds or too many are waiting.
"""

import asyncio
import contextlib
import json
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

from seq2seq.errors import UserError

PAGE = Path(__file__).with_name("page.html")
FIELDS = ("text", "beam", "attention", "scores")


class Limits(NamedTuple):
    """What one request may ask, and how long it may take."""

    max_chars: int = 1000  # characters per sentence
    max_sentences: int = 64  # sentences per request
    max_beam: int = 10
    max_body: int = 1 << 20  # bytes of a request body
    timeout: float = 30.0  # seconds a request may wait for its translations (then 503)


class BadRequest(Exception):
    """A request the server refuses: the HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, limits: Limits, default_beam: int) -> Dict[str, Any]:
    """The fields of a ``POST /translate`` body, checked; :class:`BadRequest` otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(400, f"the request body is not valid UTF-8 (byte {e.start})") from None
    try:
        req = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(400, f"the request body is not JSON ({e.msg} at line {e.lineno} "
                              f"column {e.colno})") from None
    if not isinstance(req, dict):
        raise BadRequest(400, 'the request body must be a JSON object: {"text": ["..."]}')
    unknown = [k for k in req if k not in FIELDS]
    if unknown:
        raise BadRequest(400, f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    if "text" not in req:
        raise BadRequest(400, 'missing field "text": a list of sentences to translate')
    lines = req["text"]
    if not isinstance(lines, list) or not all(isinstance(l, str) for l in lines):
        raise BadRequest(400, '"text" must be a list of strings')
    if not lines:
        raise BadRequest(400, '"text" is an empty list: nothing to translate')
    if len(lines) > limits.max_sentences:
        raise BadRequest(413, f'"text" has {len(lines)} sentences; at most '
                              f"{limits.max_sentences} per request")
    for i, l in enumerate(lines):
        if len(l) > limits.max_chars:
            raise BadRequest(413, f'"text"[{i}] has {len(l)} characters; at most '
                                  f"{limits.max_chars}")
    beam = req.get("beam", default_beam)
    if not isinstance(beam, int) or isinstance(beam, bool) or not 1 <= beam <= limits.max_beam:
        raise BadRequest(400, f'"beam" must be an integer from 1 to {limits.max_beam}, got '
                              f"{json.dumps(beam)[:40]}")
    flags = {}
    for k in ("attention", "scores"):
        v = req.get(k, False)
        if not isinstance(v, bool):
            raise BadRequest(400, f'"{k}" must be true or false, got {json.dumps(v)[:40]}')
        flags[k] = v
    return {"lines": lines, "beam": beam, **flags}


def settings(model, cfg, limits: Limits, stats: Dict[str, int]) -> Dict[str, Any]:
    """What ``GET /health`` says: the engine, the model, decoding and limits, counters."""
    import dataclasses

    engine = getattr(model, "engine", "pytorch")
    if engine == "onnxruntime":
        engine += " int8" if model.int8 else " float32"
    return {"status": "ok", "engine": engine, "model": dataclasses.asdict(cfg.model),
            "decode": {k: v for k, v in dataclasses.asdict(cfg.decode).items()
                       if k in ("beam", "length_penalty", "max_len_a", "max_len_b")},
            "limits": limits._asdict(), "served": dict(stats)}


def make_app(model, tok, cfg, device, limits: Limits = Limits(), window: float = 0.01):
    """The Starlette application (its decoding thread starts with it)."""
    import dataclasses

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from .batcher import Batcher

    batcher = Batcher(model, tok, device, window=window,
                      max_sentences=max(limits.max_sentences, cfg.decode.batch_size))
    page = PAGE.read_text(encoding="utf-8")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request: Request) -> bytes:
        size = request.headers.get("content-length", "")
        if size.isdigit() and int(size) > limits.max_body:
            raise BadRequest(413, f"the request body has {size} bytes; at most "
                                  f"{limits.max_body}")
        chunks: List[bytes] = []
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limits.max_body:
                raise BadRequest(413, f"the request body is over {limits.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def translate(request: Request):
        try:
            req = parse_request(await read_body(request), limits, cfg.decode.beam)
        except BadRequest as e:
            return error(e.status, str(e))
        opts = dataclasses.replace(cfg.decode, beam=req["beam"], n_best=1, bf16=False)
        future = batcher.submit(req["lines"], opts, req["attention"] or req["scores"])
        if future is None:
            return error(503, "too many requests are waiting: try again later")
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout)
        except asyncio.TimeoutError:
            future.cancel()
            return error(503, f"the translation took longer than {limits.timeout:g} s: "
                              "send fewer or shorter sentences, or try again later")
        except Exception as e:  # logged by the batcher
            return error(500, f"decoding failed: {type(e).__name__}")
        out: Dict[str, Any] = {"translations": result.translations}
        if req["scores"]:
            out["scores"] = [None if s is None else round(s, 4) for s in result.scores]
        if req["attention"]:
            out["attention"] = result.attention
        return JSONResponse(out)

    async def health(request: Request):
        return JSONResponse(settings(model, cfg, limits, batcher.stats))

    async def index(request: Request):
        return HTMLResponse(page)

    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            return error(404, f"no page {request.url.path} (there are /, /health and "
                              "POST /translate)")
        if exc.status_code == 405:
            return error(405, f"{request.method} is not allowed on {request.url.path}")
        return error(exc.status_code, str(exc.detail))

    async def server_error(request: Request, exc: Exception):
        return error(500, f"internal error: {type(exc).__name__}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.stop()

    return Starlette(routes=[Route("/", index), Route("/health", health),
                             Route("/translate", translate, methods=["POST"])],
                     exception_handlers={HTTPException: http_error, Exception: server_error},
                     lifespan=lifespan)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port), or a one-line error."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def serve(checkpoint, host: str = "127.0.0.1", port: int = 8000, impl=None, device="auto",
          threads: int = 1, limits: Limits = Limits(), window: float = 0.01,
          access_log: bool = False) -> int:
    """Load the model, listen, print where, and serve until Ctrl-C (or SIGTERM)."""
    from seq2seq.decoding.onnx_model import require

    require("seq2seq serve", ("starlette", "uvicorn"))
    import uvicorn

    from seq2seq.decoding.ensemble import load_for_decoding
    from seq2seq.device import set_threads

    set_threads(threads)
    model, tok, cfg, device = load_for_decoding(checkpoint, impl, device, threads)
    sock = listen(host, port)
    app = make_app(model, tok, cfg, device, limits, window)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=access_log,
                                           timeout_graceful_shutdown=5))
    where = sock.getsockname()
    url_host = f"[{where[0]}]" if ":" in where[0] else where[0]
    engine = getattr(model, "engine", "pytorch")
    print(f"seq2seq serve: {checkpoint} ({engine}) on http://{url_host}:{where[1]}/ "
          "(Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])  # uvicorn stops on Ctrl-C/SIGTERM, then raises it again
    except KeyboardInterrupt:
        pass
    print("seq2seq serve: stopped", file=sys.stderr)
    return 0
