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
on serving: 400 for a body that is not UTF-8 or not JSON (nested too deeply, a number with too
many digits, a lone surrogate included), a missing, unknown or mistyped field, an empty list;
413 for a body, a text, a list or a cost over the limits (:class:`Limits`), refused before any
decoding; 404/405 for another path or method; 503 when the request waited longer than
``timeout`` seconds (its decoding stops at the next step, so the next request does not wait for
it) or too many are waiting.
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
    """What one request may ask, and how long it may take.

    A request's cost is its beam times the characters of its sentences (Unicode code points,
    summed over the ``"text"`` list: ``sentences x characters x beam`` for sentences of one
    length), a measure of the time it holds the one decoding thread. The default
    ``max_cost`` lets through what the page is for (10 sentences of 200 characters at beam 10
    cost 20,000; 64 sentences of 150 characters at beam 5, 48,000) and refuses e.g. 64 sentences
    of 1,000 characters at beam 10 (640,000) or at beam 1 (64,000). Measured on the Multi30k
    recipe's model shape (one thread, every output run to the output limit): 50,000 at beam 10
    is 3 s of decoding for sentences of 100 characters, 9 s for sentences of 1,000; well under
    the default timeout.
    """

    max_chars: int = 1000  # characters per sentence
    max_sentences: int = 64  # sentences per request
    max_beam: int = 10
    max_body: int = 1 << 20  # bytes of a request body
    timeout: float = 30.0  # seconds a request may wait for its translations (then 503)
    max_cost: int = 50_000  # beam x characters of the sentences (see above)


def request_cost(lines: List[str], beam: int) -> int:
    """A request's cost (see :class:`Limits`): ``beam`` times the characters of ``lines``."""
    return beam * sum(len(l) for l in lines)


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
    except RecursionError:
        raise BadRequest(400, "the request body is JSON nested too deeply") from None
    except ValueError:  # Python's limit on the digits of an integer (sys.int_info)
        raise BadRequest(400, "the request body has a number with too many digits") from None
    except Exception as e:  # whatever else the parser may raise: the body's fault
        raise BadRequest(400, f"the request body is not JSON ({type(e).__name__})") from None
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
        try:
            l.encode("utf-8")
        except UnicodeEncodeError as e:  # "\ud800": JSON allows it, UTF-8 does not
            raise BadRequest(400, f'"text"[{i}] is not valid Unicode (a lone surrogate at '
                                  f"character {e.start})") from None
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
    cost = request_cost(lines, beam)
    if cost > limits.max_cost:
        raise BadRequest(413, f"the request's cost, beam {beam} x {sum(map(len, lines))} "
                              f"characters = {cost}, is over the limit of {limits.max_cost} "
                              "(max_cost, GET /health): send fewer or shorter sentences, or a "
                              "smaller beam")
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
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from seq2seq.decoding.settings import decode_settings

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
        # the checkpoint's settings, less what this beam makes meaningless
        opts = decode_settings(cfg.decode, beam=req["beam"], n_best=1, bf16=False)
        future = batcher.submit(req["lines"], opts, req["attention"] or req["scores"],
                                timeout=limits.timeout)  # then its decoding stops
        if future is None:
            return error(503, "too many requests are waiting: try again later")
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout)
        except (asyncio.TimeoutError, TimeoutError):  # ours, or the batcher's deadline
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
    from .packages import SERVE, require

    require("seq2seq serve", SERVE)
    import uvicorn

    from seq2seq.kernels.device import set_threads
    from seq2seq.load import load_for_decoding

    set_threads(threads)
    model, tok, cfg, device = load_for_decoding(checkpoint, impl=impl, device=device,
                                                threads=threads)
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
