"""``seq2seq serve`` run as a user runs it: started on a free port of 127.0.0.1, then asked over
HTTP. Translations equal the CLI's, bad requests get one-line JSON errors and the server goes
on serving, concurrent clients get what serial decoding gives, and the page works in a real
headless browser (skipped where none is installed, failed instead where
SEQ2SEQ_REQUIRE_BROWSER=1, as in CI)."""

import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from conftest import seq2seq, with_decode  # noqa: E402
from test_cli import WORDS, toy  # noqa: E402,F401  (the CLI's toy run, trained once)

SENTENCES = ["cat", "dog house", "tree water bread", "apple", "mouse cat dog", "bread apple"]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


@contextlib.contextmanager
def server(*args, cwd):
    """``seq2seq serve --port 0 ARGS`` in a subprocess; yields ``(base URL, stderr lines)``;
    stopped with Ctrl-C (SIGINT) at the end, which must exit 0 without a traceback."""
    p = subprocess.Popen([sys.executable, "-m", "seq2seq", "serve", "--port", "0", *map(str, args)],
                         cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    url = None
    for line in p.stderr:  # the line that says where it listens
        lines.append(line)
        if " on http://" in line:
            url = line.split(" on ")[1].split()[0].rstrip("/")
            break
    assert url, f"the server did not start:\n{''.join(lines)}"
    drain = threading.Thread(target=lambda: lines.extend(p.stderr), daemon=True)
    drain.start()
    try:
        yield url, lines
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
        drain.join(timeout=5)
        assert rc == 0 and not any("Traceback" in l for l in lines), "".join(lines)


def call(url, path, body=None, timeout=60):
    """``(status, JSON)`` of a GET (no body) or POST; ``body``: bytes, or data to send as JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    return status, json.loads(raw)


@pytest.fixture(scope="module")
def served(toy):
    with server("--checkpoint", toy.run, cwd=toy.dir) as (url, lines):
        yield url, lines


def cli(toy, checkpoint, lines, *opts):
    p = seq2seq("translate", "--checkpoint", checkpoint, *opts, input="\n".join(lines) + "\n",
                cwd=toy.dir)
    return p.stdout.splitlines()


def test_round_trip_equals_the_cli(toy, served):
    url, _ = served
    for beam in (1, 3):
        status, out = call(url, "/translate", {"text": SENTENCES + [""], "beam": beam})
        assert status == 200
        assert out["translations"] == cli(toy, toy.run, SENTENCES + [""], "--beam", beam)
    status, health = call(url, "/health")
    assert status == 200 and health["status"] == "ok" and health["engine"] == "pytorch"
    assert health["model"]["cell"] == "gru"


def test_scores_and_attention_when_asked(served):
    url, _ = served
    status, out = call(url, "/translate", {"text": ["cat dog", ""], "attention": True,
                                           "scores": True})
    assert status == 200 and out["scores"][1] is None and out["attention"][1] is None
    assert out["scores"][0] < 0
    att = out["attention"][0]
    assert att["output"][-1] == "</s>" and len(att["weights"]) == len(att["output"])
    for row in att["weights"]:
        assert len(row) == len(att["source"]) and abs(sum(row) - 1) < 1e-3
    status, plain = call(url, "/translate", {"text": ["cat dog"]})
    assert set(plain) == {"translations"} and plain["translations"] == out["translations"][:1]


BAD = [  # body, status, what the one-line error says
    (b"not json", 400, "not JSON"),
    (b'{"text": ["\xff\xfe"]}', 400, "not valid UTF-8"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"beam": 2}', 400, 'missing field "text"'),
    (b'{"text": []}', 400, "empty list"),
    (b'{"text": "a string"}', 400, "list of strings"),
    (b'{"text": ["cat", 3]}', 400, "list of strings"),
    (b'{"text": ["cat"], "beams": 2}', 400, "unknown field 'beams'"),
    (b'{"text": ["cat"], "beam": 0}', 400, '"beam" must be'),
    (b'{"text": ["cat"], "beam": true}', 400, '"beam" must be'),
    (b'{"text": ["cat"], "attention": "yes"}', 400, '"attention" must be'),
    (json.dumps({"text": ["cat " * 300]}).encode(), 413, "characters; at most 1000"),
    (json.dumps({"text": ["cat"] * 65}).encode(), 413, "at most 64 per request"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),  # RecursionError in json
    (b'{"text": ["cat"], "beam": ' + b"9" * 5000 + b"}", 400, "too many digits"),  # ValueError
    (b'{"text": ["cat\\ud800"]}', 400, "lone surrogate"),  # valid JSON, not valid UTF-8 text
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_requests_get_one_line_errors_and_the_server_goes_on(served, body, status, message):
    url, _ = served
    got, out = call(url, "/translate", body)
    assert got == status and set(out) == {"error"} and message in out["error"]
    assert "\n" not in out["error"]
    assert call(url, "/translate", {"text": ["cat"]})[0] == 200


def test_help_and_start_up_errors_are_one_line(toy, tmp_path):
    text = seq2seq("serve", "--help", cwd=tmp_path).stdout
    for opt in ("--checkpoint", "--host", "--port", "--timeout", "--max-sentences",
                "--max-request-cost", "/translate"):
        assert opt in text
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for args, message in ([toy.run, "--port", port], "cannot listen on 127.0.0.1:"), (
                [tmp_path / "nothing", "--port", "0"], "nothing"):
            p = seq2seq("serve", "--checkpoint", *args, cwd=toy.dir, check=False)
            assert p.returncode == 2 and message in p.stderr, p.stderr
            assert len(p.stderr.strip().splitlines()) == 1


def test_without_starlette_one_line_says_what_to_install(tmp_path):
    fake = tmp_path / "no_server"  # modules that fail to import, ahead of the real ones
    fake.mkdir()
    for name in ("starlette", "uvicorn"):
        (fake / f"{name}.py").write_text(f"raise ImportError('No module named {name}')\n")
    env = {"PYTHONPATH": f"{fake}:{os.environ.get('PYTHONPATH', '')}"}
    p = seq2seq("serve", "--checkpoint", tmp_path / "run", cwd=tmp_path, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("seq2seq serve: error: seq2seq serve needs the starlette package")
    assert "pip install 'seq2seq[deploy]'" in p.stderr


def test_a_body_over_the_limit_is_refused_before_it_is_read(served):
    url, _ = served
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:  # announce 2 MB, send a little: the answer must not wait for the rest
        conn.putrequest("POST", "/translate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 << 20))
        conn.endheaders(b'{"text": ["')
        r = conn.getresponse()
        status, out = r.status, json.loads(r.read())
    finally:
        conn.close()
    assert status == 413 and "at most 1048576" in out["error"]
    assert call(url, "/translate", {"text": ["cat"]})[0] == 200


def test_unknown_paths_and_methods(served):
    url, _ = served
    assert call(url, "/nowhere")[0] == 404
    status, out = call(url, "/translate")  # GET
    assert status == 405 and "GET" in out["error"]


def test_a_request_that_takes_too_long_is_cut_off_with_503(toy):
    # a 10 ms collection window is longer than the 1 ms allowed: every translation is late
    with server("--checkpoint", toy.run, "--timeout", "0.001", cwd=toy.dir) as (url, _):
        status, out = call(url, "/translate", {"text": ["cat"]})
        assert status == 503 and "longer than" in out["error"]
        status, health = call(url, "/health")
        assert status == 200 and health["served"]["errors"] == 0


HEAVY = {"text": ["x" * 1000] * 64, "beam": 10}  # the request of issue 29: ~10 s of decoding
# here (1,001 source pieces per sentence, outputs to the output limit)


def answered_in(url, body):
    """``(status, JSON, seconds)`` of a POST."""
    t0 = time.monotonic()
    status, out = call(url, "/translate", body)
    return status, out, time.monotonic() - t0


def test_an_over_budget_request_is_refused_before_it_is_decoded(served):
    url, _ = served
    status, health = call(url, "/health")
    assert health["limits"]["max_cost"] == 50_000  # the default, reported
    status, out, _ = answered_in(url, HEAVY)
    assert status == 413 and set(out) == {"error"} and "\n" not in out["error"]
    assert "640000" in out["error"] and "50000" in out["error"]  # its cost and the limit
    status, out, seconds = answered_in(url, {"text": ["cat"]})  # not queued behind it
    assert status == 200 and seconds < 1.0, seconds
    assert call(url, "/translate", {"text": ["cat"] * 5, "beam": 10})[0] == 200  # under it


def test_a_request_that_times_out_stops_its_decoding(toy):
    """Past its timeout a request gets a 503 and its decoding stops at the next step, so the
    next request is answered at once, not after the ~10 s the first one would have taken."""
    with server("--checkpoint", toy.run, "--timeout", "0.5", "--max-request-cost", 10 ** 6,
                cwd=toy.dir) as (url, _):
        assert call(url, "/health")[1]["limits"]["max_cost"] == 10 ** 6
        status, out, seconds = answered_in(url, HEAVY)
        assert status == 503 and "longer than 0.5 s" in out["error"] and seconds < 5
        status, out, seconds = answered_in(url, {"text": ["cat"]})
        assert status == 200 and seconds < 1.0, seconds
        served_now = call(url, "/health")[1]["served"]
        assert served_now["timed_out"] == 1 and served_now["errors"] == 0


@pytest.mark.parametrize("decode, beam, same_as", [
    ({"beam": 3, "coverage_penalty": 0.2}, 1, ["--beam", 1]),  # greedy: no coverage to rank
    ({"beam": 3, "coverage_penalty": 0.2}, None, None),  # its own settings
    ({"sample": True}, 3, ["--beam", 3]),  # beam search: no draws
], ids=["coverage-beam1", "coverage-default", "sample-beam3"])
def test_a_request_beam_never_makes_the_checkpoint_settings_invalid(toy, tmp_path, decode,
                                                                    beam, same_as):
    """A checkpoint whose decode section sets coverage_penalty (needs beam > 1) or sample
    (needs beam 1) serves any beam: what the request's beam makes meaningless is dropped, and
    the output is the original checkpoint's at that beam (None: the checkpoint's own, as
    ``seq2seq translate`` decodes it)."""
    ckpt = with_decode(toy.run, tmp_path / "decode.pt", **decode)
    with server("--checkpoint", ckpt, cwd=toy.dir) as (url, lines):
        status, out = call(url, "/translate", {"text": SENTENCES, **(
            {"beam": beam} if beam else {})})
        assert status == 200, out
    expected = cli(toy, toy.run, SENTENCES, *same_as) if same_as else cli(toy, ckpt, SENTENCES)
    assert out["translations"] == expected


def test_the_truncation_warning_is_said_once_per_server_run(toy, tmp_path):
    ckpt = with_decode(toy.run, tmp_path / "short.pt", max_len_a=0.0, max_len_b=1)
    with server("--checkpoint", ckpt, cwd=toy.dir) as (url, lines):
        for _ in range(3):  # three batches, each with outputs cut short at one piece
            assert call(url, "/translate", {"text": ["dog house", "tree water bread"]})[0] == 200
        served_now = call(url, "/health")[1]["served"]
    assert served_now["model_calls"] == 3 and served_now["truncated"] in (3, 6)
    assert sum("stopped at the output length limit" in l for l in lines) == 1, lines


def test_concurrent_clients_get_serial_outputs(toy, served):
    url, _ = served
    rng = random.Random(0)
    words = list(WORDS)
    reqs = [[" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
            for _ in range(32 * 20)]
    unique = sorted({s for r in reqs for s in r})
    serial = dict(zip(unique, cli(toy, toy.run, unique)))
    _, before = call(url, "/health")

    def client(k):
        out = []
        for r in reqs[k * 20:(k + 1) * 20]:
            status, body = call(url, "/translate", {"text": r})
            out.append((status, r, body))
        return out

    with ThreadPoolExecutor(32) as pool:
        results = [x for chunk in pool.map(client, range(32)) for x in chunk]
    assert len(results) == 640
    for status, r, body in results:
        assert status == 200, body
        assert body["translations"] == [serial[s] for s in r]
    _, after = call(url, "/health")
    served_now = {k: after["served"][k] - before["served"][k] for k in after["served"]}
    assert served_now["requests"] == 640 and served_now["errors"] == 0
    assert served_now["model_calls"] < 640  # concurrent requests were decoded together


def test_an_exported_model_serves_what_the_cli_translates(toy, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "exported"
    seq2seq("export", "--checkpoint", toy.run, "--out", out, cwd=toy.dir)
    with server("--checkpoint", out, cwd=toy.dir) as (url, _):
        status, body = call(url, "/translate", {"text": SENTENCES, "beam": 3})
        assert status == 200 and body["translations"] == cli(toy, out, SENTENCES, "--beam", 3)
        assert call(url, "/health")[1]["engine"] == "onnxruntime float32"


REQUIRE_BROWSER = os.environ.get("SEQ2SEQ_REQUIRE_BROWSER") == "1"  # .ci/run sets it


def browser():
    """``(playwright's sync_api, Chromium's executable)``. Without them the test is skipped, or
    fails where ``SEQ2SEQ_REQUIRE_BROWSER=1`` (CI): there a skipped browser test is a failure."""
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        sync_api, missing = None, "no playwright"
    exe = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
               None)
    if exe is None:
        missing = "no chromium" if missing is None else missing + " and no chromium"
    if missing:
        why = f"{missing}: bash scripts/setup.sh --browser installs chromium and playwright"
        if REQUIRE_BROWSER:
            pytest.fail(f"SEQ2SEQ_REQUIRE_BROWSER=1 but {why}", pytrace=False)
        pytest.skip(why)
    return sync_api, exe


def heatmap(page):
    """The drawn heatmap: ``(column pieces, row pieces, rows of weights read from the cells)``."""
    cols = [th.inner_text() for th in page.query_selector_all("#heatmap thead th")][1:]
    rows, weights = [], []
    for tr in page.query_selector_all("#heatmap tbody tr"):
        rows.append(tr.query_selector("th").inner_text())
        weights.append([float(td.get_attribute("title").rsplit(": ", 1)[1])
                        for td in tr.query_selector_all("td")])
    return cols, rows, weights


def test_the_page_in_a_headless_browser(toy, served, tmp_path):
    """The page as a user meets it: the model's settings, two lines translated as the CLI
    translates them, the last one's attention drawn, and a bad input's one-line error."""
    sync_api, exe = browser()
    url, _ = served
    lines = ["cat", "tree water"]
    expected = cli(toy, toy.run, lines)
    _, direct = call(url, "/translate", {"text": lines, "attention": True})
    att = direct["attention"][-1]
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True)
        try:
            page = b.new_page()
            requests_out = []  # the page must load nothing from outside
            page.on("request", lambda r: requests_out.append(r.url))
            page.goto(url + "/")
            page.wait_for_selector("#settings table")
            settings = dict(tuple(td.inner_text() for td in tr.query_selector_all("td"))
                            for tr in page.query_selector_all("#settings tr"))
            assert settings["engine"] == "pytorch" and settings["cell"] == "gru"
            assert settings["decode.beam"] == page.input_value("#beam") == "1"
            assert settings["max characters / sentence"] == "1000"

            page.fill("#source", "\n".join(lines))
            page.click("#translate")
            page.wait_for_function("document.getElementById('output').textContent.length > 0")
            assert page.inner_text("#output").splitlines() == expected
            assert page.inner_text("#error") == ""
            cols, rows, weights = heatmap(page)  # the last line's: "tree water"
            assert cols == att["source"] and len(cols) == 2  # "▁tree", "▁water"
            assert rows == att["output"] and rows[-1] == "</s>"
            for row in weights:  # each output piece's attention sums to one over the source
                assert len(row) == len(cols) and abs(sum(row) - 1) < 1e-2
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            if os.environ.get("SEQ2SEQ_KEEP_SCREENSHOT"):
                shutil.copy(tmp_path / "page.png", os.environ["SEQ2SEQ_KEEP_SCREENSHOT"])

            page.fill("#source", "cat\n" + "x" * 1001)  # over the server's --max-chars
            page.click("#translate")
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            error = page.inner_text("#error")
            assert error == 'Error: "text"[1] has 1001 characters; at most 1000', error
            assert page.inner_text("#translate") == "Translate" and page.is_enabled("#translate")
        finally:
            b.close()
    assert all(u.startswith(url) for u in requests_out), requests_out
