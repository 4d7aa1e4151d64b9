"""End-to-end fixtures: two mock upstreams and a gateway in front of them.

The whole session shares one `switchyard mock` named ``primary`` and one named
``fallback``; every test that asks for ``gateway`` gets its own fresh
``switchyard serve`` (same config: routes put ``primary`` first and ``fallback``
second, see ``GATEWAY_CONFIG``), so gateway state such as backend health never
leaks between tests.  Every test starts with both mocks reset (no plan, counters
at zero).

Environment:
  SWITCHYARD_BIN              path of the binary (default: target/debug/switchyard,
                              relative paths are taken from the repository root)
  SWITCHYARD_E2E_START_TIMEOUT seconds to wait for a process's "listening on" line
                              (default 20)
  CLAUDE_CODE_BIN, HERMES_BIN, CODEX_BIN
                              the real agent CLIs (test_claude_code.py, test_hermes.py,
                              test_codex.py; scripts/test installs them into .agents/ and
                              exports these)
  CI                          "true": a missing agent CLI fails its tests instead of skipping
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PRIMARY_KEY = "sk-primary-test"
FALLBACK_KEY = "sk-fallback-test"

# Timings the tests rely on; keep in sync with GATEWAY_CONFIG below.
TTFT_TIMEOUT_S = 2.0
STALL_TIMEOUT_S = 2.0

GATEWAY_CONFIG = """\
listen: 127.0.0.1:0
backends:
  primary:     {{ api: anthropic_messages, base_url: "{primary}", api_key_env: PRIMARY_KEY }}
  fallback:    {{ api: anthropic_messages, base_url: "{fallback}", api_key_env: FALLBACK_KEY }}
  oa-primary:  {{ api: openai_chat, base_url: "{primary}/v1", api_key_env: PRIMARY_KEY }}
  oa-fallback: {{ api: openai_chat, base_url: "{fallback}/v1", api_key_env: FALLBACK_KEY }}
  r-primary:   {{ api: openai_responses, base_url: "{primary}/v1", api_key_env: PRIMARY_KEY }}
  r-fallback:  {{ api: openai_responses, base_url: "{fallback}/v1", api_key_env: FALLBACK_KEY }}
routes:
  claude-main: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
  gpt-main:    {{ chain: [ {{ backend: oa-primary, model: gpt-4o }}, {{ backend: oa-fallback, model: gpt-4o-mini }} ] }}
  codex-main:  {{ chain: [ {{ backend: r-primary, model: gpt-5 }}, {{ backend: r-fallback, model: gpt-5-mini }} ] }}
  # Mixed-dialect chains (translation): the first backend of each speaks the other dialect
  # than the one whose name the route starts with, or the fallback does.
  oa-over-claude: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: oa-fallback, model: gpt-4o-mini }} ] }}
  an-over-gpt:    {{ chain: [ {{ backend: oa-primary, model: gpt-4o }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
  codex-claude:   {{ chain: [ {{ backend: r-primary, model: gpt-5 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
  an-over-resp:   {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: r-fallback, model: gpt-5-mini }} ] }}
  # Named as a model Codex knows, so that Codex offers its model family's tools (apply_patch).
  gpt-5.5:        {{ chain: [ {{ backend: r-primary, model: gpt-5 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
failover: {{ retries: 1, backoff: {{ base: 10ms, max: 50ms }}, ttft_timeout: 2s, stall_timeout: 2s, connect_timeout: 1s, deadline: 30s }}
"""

MOCK_LINE = re.compile(r"switchyard mock (\S+) listening on (http://\S+)")
GATEWAY_LINE = re.compile(r"switchyard listening on (http://\S+)")

# Never send test traffic through a proxy: everything is on 127.0.0.1.
for _var in ("NO_PROXY", "no_proxy"):
    _have = os.environ.get(_var, "")
    if "127.0.0.1" not in _have:
        os.environ[_var] = ",".join(x for x in (_have, "127.0.0.1", "localhost") if x)

# The SDKs read these from the environment and would add or change credentials and
# endpoints behind the tests' backs; the tests pass everything explicitly.
for _var in (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
):
    os.environ.pop(_var, None)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- HTTP helpers


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """Plain JSON HTTP call (stdlib only). Returns (status, decoded JSON or text)."""
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def _ok(method: str, url: str, body: Any = None) -> Any:
    status, payload = http(method, url, body)
    assert 200 <= status < 300, f"{method} {url} -> {status}: {payload!r}"
    return payload


def set_plan(mock_url: str, steps: list[dict], then: dict | None = None) -> None:
    """Program a mock: `steps` are used one per API request, then `then` for all later ones."""
    plan: dict[str, Any] = {"steps": list(steps)}
    if then is not None:
        plan["then"] = then
    _ok("POST", f"{mock_url}/_mock/plan", plan)


def stats(mock_url: str) -> dict:
    """The mock's counters: requests, by_path, in_flight, completed, cancelled."""
    return _ok("GET", f"{mock_url}/_mock/stats")


def requests(mock_url: str) -> list[dict]:
    """The last 100 API requests the mock received, oldest first."""
    return _ok("GET", f"{mock_url}/_mock/requests")


def reset(mock_url: str) -> None:
    _ok("POST", f"{mock_url}/_mock/reset")


def header_values(recorded: dict, name: str) -> list[str]:
    """Values of header `name` in one entry of requests(); accepts a dict or a list of pairs."""
    headers = recorded.get("headers") or {}
    items: list[tuple[str, Any]]
    if isinstance(headers, dict):
        items = list(headers.items())
    else:
        items = [(h[0], h[1]) if isinstance(h, (list, tuple)) else (h["name"], h["value"]) for h in headers]
    out: list[str] = []
    for k, v in items:
        if k.lower() == name.lower():
            out.extend(v if isinstance(v, list) else [v])
    return [str(v) for v in out]


def all_header_values(recorded: dict) -> list[str]:
    headers = recorded.get("headers") or {}
    names = headers.keys() if isinstance(headers, dict) else [
        h[0] if isinstance(h, (list, tuple)) else h["name"] for h in headers
    ]
    return [v for n in names for v in header_values(recorded, n)]


def json_body(recorded: dict) -> dict:
    """The JSON body of one entry of requests() (the mock may store it decoded or as text)."""
    body = recorded.get("body")
    if isinstance(body, str):
        body = json.loads(body)
    assert isinstance(body, dict), f"request body is not a JSON object: {body!r}"
    return body


# --------------------------------------------------------------------------- agent CLIs


def missing_agent(why: str):
    """A real agent CLI (Claude Code, Hermes, Codex; installed by scripts/test) is missing:
    skip locally, fail under CI (``CI=true``), where its tests must never pass silently
    without it."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


# --------------------------------------------------------------------------- a webhook sink


class WebhookReceiver:
    """A tiny stdlib HTTP server collecting the JSON bodies the gateway's webhook sink POSTs."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (stdlib name)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(204)
                self.end_headers()
                with receiver._cond:
                    receiver.alerts.append(json.loads(raw))
                    receiver._cond.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event: str, count: int, timeout: float = 10.0) -> list[dict]:
        """The first `count` alerts of `event`, waiting up to `timeout` for them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [a for a in self.alerts if a.get("event") == event]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"expected {count} {event} alert(s) within {timeout:.0f}s, got: {self.alerts!r}",
                        pytrace=False,
                    )
                self._cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def alerts_yaml(webhook_url: str) -> str:
    """An ``alerts:`` section (for ``gateway_with``) sending fallback_activated to the webhook.
    A short throttle, so a second alert of the same session is sent rather than digested."""
    return (
        "alerts:\n"
        "  throttle: 10ms\n"
        "  sinks:\n"
        f'    - {{ kind: webhook, url: "{webhook_url}", events: [fallback_activated] }}\n'
    )


# --------------------------------------------------------------------------- processes


class Proc:
    """A child process whose stdout is read line by line in a thread (so it never blocks)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = argv
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.stdout_seen: list[str] = []
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=str(log_dir),
            start_new_session=True,
        )
        threading.Thread(target=self._pump, name=f"stdout-{name}", daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stdout_seen.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def diagnostics(self) -> str:
        self._stderr.flush()
        try:
            err = self.stderr_path.read_text("utf-8", "replace")
        except OSError:
            err = ""
        err = err[-6000:]
        return (
            f"--- {self.name}: {' '.join(self.argv)}\n"
            f"--- exit code: {self.p.poll()}\n"
            f"--- stdout:\n" + "\n".join(self.stdout_seen[-50:]) + "\n"
            f"--- stderr ({self.stderr_path}):\n{err}"
        )

    def wait_for_line(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"no line matching /{pattern.pattern}/ within {timeout:.0f}s")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                try:
                    self.p.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                self.fail(f"stdout closed before a line matching /{pattern.pattern}/")
            m = pattern.search(line)
            if m:
                return m

    def fail(self, why: str):
        msg = f"{self.name}: {why}\n{self.diagnostics()}"
        self.stop()
        pytest.fail(msg, pytrace=False)

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=5)
        self._stderr.close()


def _start_timeout() -> float:
    return float(os.environ.get("SWITCHYARD_E2E_START_TIMEOUT", "20"))


@pytest.fixture(scope="session")
def switchyard_bin() -> Path:
    raw = os.environ.get("SWITCHYARD_BIN") or "target/debug/switchyard"
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"switchyard binary not found or not executable at {path} "
            "(run `cargo build` first or set SWITCHYARD_BIN)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("switchyard-e2e")


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    env["PRIMARY_KEY"] = PRIMARY_KEY
    env["FALLBACK_KEY"] = FALLBACK_KEY
    return env


def _start_mock(bin_path: Path, name: str, log_dir: Path) -> tuple[Proc, str]:
    proc = Proc(
        f"mock-{name}",
        [str(bin_path), "mock", "--listen", "127.0.0.1:0", "--name", name],
        _base_env(),
        log_dir,
    )
    m = proc.wait_for_line(MOCK_LINE, _start_timeout())
    if m.group(1) != name:
        proc.fail(f"mock announced name {m.group(1)!r}, expected {name!r}")
    return proc, m.group(2).rstrip("/")


def _wait_healthy(proc: Proc, url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            proc.fail("exited while waiting for /healthz")
        try:
            status, body = http("GET", f"{url}/healthz", timeout=2)
            if status == 200:
                return
            last = (status, body)
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.1)
    proc.fail(f"GET {url}/healthz never answered 200 (last: {last!r})")


@pytest.fixture(scope="session")
def mocks(switchyard_bin: Path, e2e_dir: Path):
    """{'primary': url, 'fallback': url} of two running mock upstreams."""
    procs: list[Proc] = []
    urls: dict[str, str] = {}
    try:
        for name in ("primary", "fallback"):
            proc, url = _start_mock(switchyard_bin, name, e2e_dir)
            procs.append(proc)
            urls[name] = url
        yield urls
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture(scope="session")
def primary(mocks) -> str:
    return mocks["primary"]


@pytest.fixture(scope="session")
def fallback(mocks) -> str:
    return mocks["fallback"]


@pytest.fixture(scope="session")
def gateway_config(e2e_dir: Path, mocks) -> Path:
    """The gateway's config file, pointing at the two session mocks."""
    config = e2e_dir / "switchyard.yaml"
    config.write_text(GATEWAY_CONFIG.format(primary=mocks["primary"], fallback=mocks["fallback"]))
    return config


_GATEWAY_PROCS: list[Proc] = []


def _start_gateway(switchyard_bin: Path, e2e_dir: Path, config: Path) -> tuple[Proc, str]:
    n = len(_GATEWAY_PROCS) + 1
    proc = Proc(
        f"gateway-{n}",
        [str(switchyard_bin), "serve", "--config", str(config)],
        _base_env(),
        e2e_dir,
    )
    _GATEWAY_PROCS.append(proc)
    try:
        url = proc.wait_for_line(GATEWAY_LINE, _start_timeout()).group(1).rstrip("/")
        _wait_healthy(proc, url)
    except BaseException:
        proc.stop()
        raise
    return proc, url


@pytest.fixture
def gateway(switchyard_bin: Path, e2e_dir: Path, gateway_config: Path) -> str:
    """Base URL (no trailing slash, no /v1) of a running `switchyard serve`.

    A fresh gateway per test (it starts in milliseconds): the gateway keeps per-backend
    health (failure streaks, cooldowns) and sessions in memory, so one test's failovers
    must not change which backend the next test reaches.
    """
    proc, url = _start_gateway(switchyard_bin, e2e_dir, gateway_config)
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def gateway_with(switchyard_bin: Path, e2e_dir: Path, mocks):
    """A factory: ``gateway_with(extra_yaml)`` starts a gateway whose config is
    ``GATEWAY_CONFIG`` plus ``extra_yaml`` (top-level sections the base config does not
    set, e.g. ``alerts:``) and returns its base URL. Stopped at the end of the test."""
    started: list[Proc] = []

    def start(extra_yaml: str) -> str:
        config = e2e_dir / f"switchyard-extra-{len(_GATEWAY_PROCS) + 1}.yaml"
        base = GATEWAY_CONFIG.format(primary=mocks["primary"], fallback=mocks["fallback"])
        config.write_text(base + extra_yaml)
        proc, url = _start_gateway(switchyard_bin, e2e_dir, config)
        started.append(proc)
        return url

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture(autouse=True)
def _reset_mocks(mocks):
    """Each test starts with both mocks planless (every request ok) and counters at zero."""
    for url in mocks.values():
        reset(url)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the tail of the gateway's stderr to the report."""
    outcome = yield
    rep = outcome.get_result()
    names = getattr(item, "fixturenames", ())
    uses_gateway = "gateway" in names or "gateway_with" in names
    if rep.when == "call" and rep.failed and uses_gateway and _GATEWAY_PROCS:
        proc = _GATEWAY_PROCS[-1]
        try:
            tail = proc.stderr_path.read_text("utf-8", "replace")[-4000:]
        except OSError:
            tail = "(unreadable)"
        rep.sections.append(("gateway stderr (tail)", tail))
