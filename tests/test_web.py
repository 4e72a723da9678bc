"""The local web page: its settings and refusals, the shared bounded server (/metrics and the
page on one listener), access by token, what a viewer-less page costs the frame loop, and the
whole thing in headless Chromium against the real daemon on a video of real faces."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_fer.config import Config, ConfigError, WebConfig, load_config
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.outputs.base import OutputError
from edge_fer.outputs.listeners import Listeners
from edge_fer.outputs.web import CSP, WebPage, load_token
from edge_fer.runtime.results import FaceResult, FrameResult
from edge_fer.runtime.stats import RunStats
from testkit.programs import edge_fer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "0123456789abcdef0123456789abcdef"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def frame(seq: int, faces: int = 1) -> FrameResult:
    probs = np.full(7, 0.05, np.float32)
    probs[3] = 0.7
    image = np.full((480, 640, 3), 90, np.uint8)
    found = [
        FaceResult(i + 1, (50 + 200 * i, 60, 120, 120), "happy", 0.7, "happy", probs, 0.66)
        for i in range(faces)
    ]
    timing = {"capture": 1.0, "detect": 5.0, "classify": 1.0, "total": 7.0}
    return FrameResult(seq, time.time(), image, found, timing, "run", EMOTIONS)


def feed(page: WebPage, stats: RunStats, start: int, n: int, gap_s: float = 0.0) -> None:
    for seq in range(start, start + n):
        result = frame(seq)
        stats.add_frame(result.timing_ms, [f.id for f in result.faces], [f.smoothed for f in result.faces])
        page.on_frame(result, stats)
        if gap_s:
            time.sleep(gap_s)


@pytest.fixture()
def page_factory():
    made: list[WebPage] = []

    def make(token: str | None = None, listeners: Listeners | None = None, **web) -> WebPage:
        config = WebConfig(**{"enabled": True, "port": 0, **web})
        info = {"name": "student", "file": "/x/m.pte", "runtime": "native"}
        page = WebPage(config, EMOTIONS, EMOTIONS, info, "file:v.mp4", True, listeners, token)
        made.append(page)
        return page

    yield make
    for page in made:
        page.close()


def viewing(page: WebPage, stats: RunStats, path: str = "/frame.jpg", headers: dict | None = None):
    """Ask for `path` while the frame loop runs (as a real viewer's first request does)."""
    box: dict = {}
    asker = threading.Thread(target=lambda: box.update(r=get(page.server.port, path, headers)))
    asker.start()
    seq = 0
    while asker.is_alive():
        feed(page, stats, seq, 1)
        seq += 1
        time.sleep(0.01)
    return box["r"]


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.fast
def test_off_by_default_and_local_only_unless_a_token(tmp_path):
    web = Config().web
    assert (web.enabled, web.bind, web.token_file) == (False, "127.0.0.1", None)
    cfg = tmp_path / "c.yaml"
    for bind in ("0.0.0.0", "192.168.1.20", "::", "pi.local"):
        cfg.write_text(f"web: {{enabled: true, bind: '{bind}'}}\n")
        with pytest.raises(ConfigError, match=r"web.bind.*needs web.token_file"):
            load_config(cfg)
    for bind in ("127.0.0.1", "::1", "localhost", "127.0.1.1"):
        cfg.write_text(f"web: {{enabled: true, bind: '{bind}'}}\n")
        assert load_config(cfg).web.bind == bind
    cfg.write_text("web: {enabled: true, bind: 0.0.0.0, token_file: /etc/edge-fer/web-token}\n")
    assert load_config(cfg).web.token_file == Path("/etc/edge-fer/web-token")
    cfg.write_text("metrics: {port: 9100}\nweb: {enabled: true, port: 9100, bind: '::1'}\n")
    with pytest.raises(ConfigError, match="one server listens on one address"):
        load_config(cfg)
    for bad, needle in (("fps: 0", "web.fps"), ("port: 0", "web.port"), ("width: 10", "web.width")):
        cfg.write_text(f"web: {{enabled: true, {bad}}}\n")
        with pytest.raises(ConfigError, match=needle):
            load_config(cfg)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return edge_fer(list(args), timeout)


def test_cli_refuses_an_open_page_without_a_usable_token_in_one_line(tmp_path, video_args):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("web: {bind: 0.0.0.0}\n")
    done = _cli("--config", str(cfg), "--web", *video_args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "needs web.token_file" in done.stderr
    token = tmp_path / "token"
    for text, mode, needle in (
        (TOKEN, 0o644, "readable by group or others"),
        ("short", 0o600, "too short"),
        ("", 0o600, "is empty; write the token into it"),
    ):
        token.write_text(text)
        token.chmod(mode)
        cfg.write_text(f"web: {{bind: 0.0.0.0, token_file: {token}}}\n")
        done = _cli("--config", str(cfg), "--web", str(free_port()), "--max-frames", "5", *video_args)
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
        assert done.returncode == 2 and len(errors) == 1 and needle in errors[0], done.stderr[-2000:]
        assert TOKEN not in done.stderr
    done = _cli("--web", "70000", *video_args)
    assert done.returncode == 2 and "web.port" in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _cli("--web", str(taken.getsockname()[1]), "--max-frames", "5", *video_args)
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert done.returncode == 2 and len(errors) == 1 and "web: cannot listen on 127.0.0.1:" in errors[0]
    assert "Traceback" not in done.stderr


@pytest.mark.fast
def test_load_token_needs_an_owner_only_file_with_a_long_token(tmp_path):
    token = tmp_path / "t"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    assert load_token(token) == TOKEN
    for weak in (
        "has a space in it, long enough",
        "a" * 40,
        "abababababababababab",
        "short1",
        "pässwörd-0123456789",
    ):
        token.write_text(weak)
        with pytest.raises(OutputError, match="too short or too simple, or has spaces or non-ASCII"):
            load_token(token)
    with pytest.raises(OutputError, match="does not exist; create it holding the token"):
        load_token(tmp_path / "missing")
    with pytest.raises(OutputError, match="not a regular file"):
        load_token(tmp_path)


# -- the server --------------------------------------------------------------------------------


@pytest.mark.fast
@given(st.binary(max_size=400), st.sampled_from([b"\r\n\r\n", b"\n\n"]))
@settings(max_examples=300, deadline=None)
def test_any_request_head_is_a_request_or_refused_never_an_exception(head, end):
    from edge_fer.core.http_server import BoundedHTTPServer, Request, parse_head

    request = parse_head(head + end)
    assert request is None or isinstance(request, Request)
    if request is not None:
        # No route but the exact ones: anything else is the fallback's (404 by default).
        answer = BoundedHTTPServer.answer(_Routes(), request)
        assert answer.status == ("200 OK" if request.path == "/only" else "404 Not Found")


class _Routes:
    """Just what BoundedHTTPServer.answer reads."""

    def __init__(self) -> None:
        from edge_fer.core.http_server import Response, not_found

        self.routes = {"/only": lambda request: Response("200 OK")}
        self.fallback = not_found


@pytest.mark.fast
def test_assets_content_types_security_headers_and_no_file_system(page_factory):
    page = page_factory()
    port = page.server.port
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, headers, body = get(port, path)
        assert status == 200 and headers["content-type"].startswith(kind), path
        assert headers["content-security-policy"] == CSP and "default-src 'self'" in CSP
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"
        assert body
    html = get(port, "/")[2].decode()
    assert "never stored" in html and "http" not in html.replace('href="app.css"', "").split("<body>")[0]
    for path in (
        "/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/../../etc/passwd",
        "//etc/passwd",
        "/web_assets/",
        "/web_assets/index.html",
        "/index.html",
        "/app.js%00.png",
        "/etc/passwd",
        "/static/",
    ):
        status, headers, body = get(port, path)
        assert status == 404 and b"root:" not in body and headers["x-content-type-options"] == "nosniff", path
    assert raw(port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").startswith(
        b"HTTP/1.1 405"
    )
    assert raw(port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 431")
    status, headers, body = get(port, "/", method="HEAD")
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""


@pytest.mark.fast
def test_a_viewer_less_page_costs_the_frame_loop_nothing(page_factory):
    page, stats = page_factory(), RunStats()
    feed(page, stats, 0, 300)
    assert page.frames_seen == 300 and page.snapshots == 0 and page.encoded == 0
    assert page._job is None and page._state is None  # no frame is even kept
    status, headers, body = viewing(page, stats)
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert page.snapshots >= 1 and page.encoded == 1
    # The viewer leaves: after VIEWER_IDLE_S the frame loop stops keeping frames again.
    page._last_view -= 10
    before = page.snapshots, page.encoded
    feed(page, stats, 1000, 100)
    assert (page.snapshots, page.encoded) == before
    assert page._job is None and page._jpeg is None and page._state is None  # no picture kept


def test_frames_newest_wins_at_most_fps_and_shared_by_viewers(page_factory):
    page, stats = page_factory(fps=2.0), RunStats()
    assert viewing(page, stats)[0] == 200
    # A viewer asking keeps the page on; frames arrive at ~100 fps for 1.2 s.
    t0, seq = time.monotonic(), 10
    while time.monotonic() - t0 < 1.2:
        page._last_view = time.monotonic()
        feed(page, stats, seq, 1)
        seq += 1
        time.sleep(0.01)
    assert 2 <= page.snapshots <= 5  # ~2 a second kept, the rest never held
    newest = page._job[0]
    answers = [get(page.server.port, "/frame.jpg") for _ in range(5)]
    assert {a[1]["x-frame-seq"] for a in answers} == {str(newest)}
    assert len({a[2] for a in answers}) == 1 and page.encoded == 2  # one encode for everyone


@pytest.mark.fast
def test_state_has_faces_health_and_label_mix(page_factory):
    page, stats = page_factory(), RunStats()
    page.history.bucket_s = 0.05
    status, headers, body = viewing(page, stats, "/api/state")
    assert status == 200 and headers["content-type"] == "application/json"
    feed(page, stats, 100, 30, gap_s=0.01)
    page._next_state = 0
    feed(page, stats, 200, 1)
    state = json.loads(get(page.server.port, "/api/state")[2])
    assert state["faces"] == [{"id": 1, "label": "happy", "score": 0.66, "box": [50, 60, 120, 120]}]
    health = state["health"]
    assert health["fps"] > 0 and health["detect_ms"] == 5.0 and health["classify_ms"] == 1.0
    assert health["model"] == "student" and health["model_file"] == "m.pte" and health["source"]
    assert health["dropped_frames"] == 0 and health["frames"] == stats.frames
    mix = state["mix"]
    assert len(mix["buckets"]) >= 3 and sum(b.get("happy", 0) for b in mix["buckets"]) == stats.frames - 1
    assert set(mix["labels"]) >= set(EMOTIONS) and state["colours"]["happy"].startswith("#")


@pytest.mark.fast
def test_a_token_is_needed_by_header_or_login_cookie(page_factory):
    page, stats = page_factory(token=TOKEN), RunStats()
    port = page.server.port
    status, headers, body = get(port, "/")
    assert status == 401 and b'name="token"' in body and b"never stored" in body
    assert get(port, "/app.css")[0] == 200  # the login form's style: no data in it
    for path in ("/frame.jpg", "/api/state"):
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
                     {"Authorization": f"Basic {TOKEN}"}, {"Cookie": "edge_fer_session_0=" + "0" * 64},
                     {"Cookie": f"{page.auth.cookie}={TOKEN}"}):  # fmt: skip
            status, headers, body = get(port, path, auth)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer"), (path, auth)
    assert page.snapshots == 0 and page.encoded == 0  # refused requests never start frames
    assert viewing(page, stats, "/frame.jpg", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status, headers, body = get(port, "/login?token=nope")
    assert status == 403 and b"not right" in body and "set-cookie" not in headers
    status, headers, _ = get(port, f"/login?token={TOKEN}")
    assert status == 303 and headers["location"] == "./"  # relative: works behind a proxy path
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    status, _, body = get(port, "/", {"Cookie": "other=1; " + cookie.split(";")[0]})
    assert status == 200 and b'id="live"' in body
    assert page.refused > 0


@pytest.mark.fast
def test_without_a_token_only_loopback_host_names_are_served(page_factory):
    page = page_factory()
    port = page.server.port
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", f"[::1]:{port}"):
        assert get(port, "/", {"Host": host})[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", "192.168.1.5", "127.0.0.1.evil.example"):
        status, _, body = get(port, "/", {"Host": host})
        assert status == 403 and b"127.0.0.1" in body, host


def test_metrics_and_the_page_share_one_server_with_one_set_of_limits(page_factory):
    from edge_fer.outputs.prometheus import MetricsEndpoint

    listeners = Listeners()
    port = free_port()
    stats = RunStats()
    metrics = MetricsEndpoint(stats, {"name": "m"}, EMOTIONS, port, "127.0.0.1", None, listeners)
    page = page_factory(listeners=listeners, port=port)
    try:
        assert page.server is metrics.server
        assert b"edge_fer_frames_total" in get(port, "/metrics")[2]
        assert b'id="live"' in get(port, "/")[2]
        assert get(port, "/nope")[0] == 404
        with pytest.raises(OutputError, match="same bind address"):
            listeners.acquire(port, "::1", "web")
        # 300 half-sent requests: threads stay bounded and both the page and /metrics answer.
        base = threading.active_count()
        clients = []
        try:
            for _ in range(300):
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
                c.send(b"GET /fra")
                clients.append(c)
            time.sleep(1)
            assert threading.active_count() <= base + 9
            assert get(port, "/metrics")[0] == 200 and get(port, "/app.js")[0] == 200
        finally:
            for c in clients:
                c.close()
    finally:
        page.close()
        metrics.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_slow_readers_are_cut_off_and_memory_stays_put(page_factory):
    page, stats = page_factory(), RunStats()
    page.server.timeout_s = 1.0
    assert viewing(page, stats)[0] == 200
    socks = []
    for _ in range(20):  # ask for a picture, never read it
        s = socket.create_connection(("127.0.0.1", page.server.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /frame.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        socks.append(s)
    base = threading.active_count()
    for _ in range(100):
        page._last_view = time.monotonic()
        feed(page, stats, 0, 1)
        time.sleep(0.02)
    assert threading.active_count() <= base + 9
    assert get(page.server.port, "/app.js")[0] == 200
    for s in socks:
        s.close()


# -- the real daemon in a real browser -----------------------------------------------------------


def _driver(tmp_path: Path, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}",
                 f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(what, timeout: float = 30, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_page_in_headless_chromium_against_the_daemon(tmp_path, video_args):
    from selenium.webdriver.common.by import By

    port = free_port()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    events = tmp_path / "events.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"web: {{enabled: true, port: {port}, token_file: {token}, fps: 4}}\nconsole: 'off'\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_fer.apps.daemon",
            "--config",
            str(cfg),
            "--events-jsonl",
            str(events),
            *video_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    driver = None
    try:
        _wait(lambda: daemon.poll() is not None or get_ok(port), timeout=60)
        assert daemon.poll() is None, daemon.stderr.read()[-2000:]
        driver = _driver(tmp_path, 390, 844)  # a phone
        base = f"http://127.0.0.1:{port}"
        driver.get(base + "/")  # no token: the login form, not the page
        assert driver.find_elements(By.NAME, "token") and not driver.find_elements(By.ID, "live")
        driver.get(base + "/login?token=" + "x" * 32)  # a wrong token
        assert "not right" in driver.find_element(By.ID, "error").text
        assert not driver.find_elements(By.ID, "live")
        box = driver.find_element(By.NAME, "token")
        box.send_keys(TOKEN)
        box.submit()
        _wait(lambda: driver.find_elements(By.ID, "live"))
        assert driver.current_url == base + "/"  # the address with the token is left behind

        # The live picture updates: new frames keep arriving.
        img = driver.find_element(By.ID, "live")
        _wait(lambda: int(img.get_attribute("data-pictures") or 0) >= 2)
        first = int(img.get_attribute("data-seq"))
        _wait(lambda: int(img.get_attribute("data-seq")) > first and img.get_property("naturalWidth") == 640)

        # The faces list shows what the events output published for the same frame.
        def faces_match() -> bool:
            shown = driver.execute_script(
                "return [document.body.dataset.frame,"
                " [...document.querySelectorAll('#faces li[data-label]')]"
                ".map(li => [+li.dataset.id, li.dataset.label])]"
            )
            if shown[0] is None or not shown[1]:
                return False
            lines = [json.loads(line) for line in events.read_text().splitlines()]
            event = next((e for e in lines if e["frame"] == int(shown[0])), None)
            return event is not None and sorted(map(tuple, shown[1])) == sorted(
                (f["id"], f["smoothed"]) for f in event["faces"]
            )

        _wait(faces_match, timeout=30, every=0.5)

        # The label mix chart draws bars in the labels' colours; the health figures are there.
        _wait(lambda: int(driver.find_element(By.ID, "mix").get_attribute("data-bars") or 0) > 0)
        bars = driver.find_elements(By.CSS_SELECTOR, "#mix rect.bar")
        assert bars and all(b.get_attribute("fill").startswith("#") for b in bars)
        health = driver.find_element(By.ID, "health").text
        assert "fps" in health and "dropped frames" in health and "native" in health and "file:" in health
        assert "never stored" in driver.find_element(By.ID, "privacy").text

        # It fits a phone: nothing wider than the screen.
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        live_width = driver.execute_script("return document.getElementById('live').clientWidth")
        assert 0 < live_width <= driver.execute_script("return window.innerWidth")
        # No script or style was refused by the page's own policy.
        refused = [e for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
        assert not refused, refused

        # A browser without the cookie is refused again (a new profile).
        driver.delete_all_cookies()
        driver.get(base + "/")
        assert driver.find_elements(By.NAME, "token") and not driver.find_elements(By.ID, "live")
    finally:
        if driver is not None:
            driver.quit()
        daemon.terminate()
        try:
            _, err = daemon.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            _, err = daemon.communicate()
    assert daemon.returncode == 0 and "Traceback" not in err, err[-2000:]


def get_ok(port: int) -> bool:
    try:
        return get(port, "/app.css")[0] == 200
    except OSError:
        return False


@pytest.mark.fast
def test_label_history_buckets_gaps_and_bounds():
    from collections import Counter

    from edge_fer.outputs.web import LabelHistory

    history, labels = LabelHistory(bucket_s=10, buckets=5), Counter()
    history.tick(0.0, labels)
    labels.update(["happy"] * 3)
    history.tick(5.0, labels)
    assert list(history.done) == [] and history.snapshot(labels) == [{"happy": 3}]
    labels.update(["sad"])
    history.tick(10.5, labels)
    assert list(history.done) == [{"happy": 3, "sad": 1}]
    history.tick(45.0, labels)  # no new label for a while: empty buckets, the axis keeps time
    assert list(history.done) == [{"happy": 3, "sad": 1}, {}, {}, {}]
    history.tick(86400.0, labels)  # a day later: still at most `buckets`, quickly
    assert len(history.done) == 5 and all(b == {} for b in history.done)


@pytest.mark.slow
def test_a_reload_moves_the_page_to_its_new_settings(tmp_path, video_args):
    import signal

    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"web: {{enabled: true, port: {port}, fps: 2}}\nconsole: 'off'\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_fer.apps.daemon", "--config", str(cfg), *video_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    def interval() -> str | None:
        try:
            status, headers, _ = get(port, "/frame.jpg")
        except OSError:
            return None
        return headers.get("x-frame-interval-ms") if status == 200 else None

    try:
        assert _wait(lambda: daemon.poll() is not None or interval(), timeout=60) == "500"
        cfg.write_text(f"web: {{enabled: true, port: {port}, fps: 10}}\nconsole: 'off'\n")
        daemon.send_signal(signal.SIGHUP)
        _wait(lambda: interval() == "100", timeout=60)
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0 and "config reloaded: web.fps: 2.0 -> 10.0" in err, err[-2000:]


def test_metrics_alone_answers_as_before():
    """A /metrics server of its own: every path but /favicon.ico is the metrics (whatever the
    query), gzip when asked, 405 for other methods, 404 for the favicon."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily

    from edge_fer.core.metrics_server import serve_registry

    class One:
        def collect(self):
            yield CounterMetricFamily("one_test", "a counter", value=1)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    server = serve_registry(registry, 0, "127.0.0.1", "metrics")
    port = server.server_address[1]
    try:
        for path in ("/metrics", "/", "/anything?x=1", "/metrics?" + "&".join(f"a{i}=1" for i in range(40))):
            status, headers, body = get(port, path)
            assert status == 200 and b"one_test_total 1.0" in body, path
            assert (
                headers["content-type"].startswith("text/plain") and "content-security-policy" not in headers
            )
        status, headers, body = get(port, "/metrics", {"Accept-Encoding": "gzip"})
        assert headers["content-encoding"] == "gzip" and body[:2] == b"\x1f\x8b"
        assert get(port, "/favicon.ico")[0] == 404
        assert raw(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    finally:
        server.close()
