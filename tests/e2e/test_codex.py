"""The real Codex CLI (``codex exec``) through the gateway's Responses API.

Codex is installed by scripts/test (a pinned npm package, see there) and found through
``CODEX_BIN`` (its native binary), else in the ignored ``.agents/`` directory where
scripts/test puts it. Without it the tests skip locally with a message, and fail under CI
(``CI=true``).

Codex runs offline: an empty HOME / CODEX_HOME per test whose ``config.toml`` defines one
custom model provider, ``switchyard`` (``wire_api = "responses"``, ``base_url`` = the
gateway's /v1, a dummy key from ``env_key``), and the model = the route ``codex-main``
(r-primary first, r-fallback second; see conftest.GATEWAY_CONFIG). Each ``codex exec`` sends
exactly one ``POST /v1/responses`` per model round trip, with its thread and turn ids in
``x-codex-turn-metadata`` (the gateway's session and turn, README "Sessions and turns").

The config also turns off what would make a run slow, flaky or not offline:
  - ``features.plugins = false``: otherwise Codex syncs its curated plugins from a code host
    at start-up (DNS lookups and git/HTTPS fetches before the first model call);
  - ``features.unbounded_connection_retries = false``: otherwise Codex retries an endpoint it
    cannot connect to for ever ("Reconnecting... waiting for network"), so a dead gateway
    would hang the test until its subprocess timeout instead of failing in a second;
  - ``request_max_retries = 0`` / ``stream_max_retries = 0``: Codex retries 5xx answers and
    dropped streams by itself, which would hide a gateway that failed to fail over; with
    none, whatever the gateway returns is what Codex gets;
  - ``stream_idle_timeout_ms``: Codex's own idle timeout (default 300 s), set to
    ``CODEX_IDLE_TIMEOUT_S`` so a gateway that held a stalled stream fails the test quickly.
Codex 0.171 accepts all of them under ``--strict-config`` (an unknown key is an error), which
every run passes so a renamed key cannot silently turn a setting off.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO_ROOT, TTFT_TIMEOUT_S, json_body, missing_agent, requests, set_plan, stats

CODEX_VERSION = "0.171.0"
ROUTE = "codex-main"  # the Responses chain of GATEWAY_CONFIG: r-primary, then r-fallback
RUN_TIMEOUT_S = 60.0
CODEX_IDLE_TIMEOUT_S = 20  # Codex's stream idle timeout in these tests (its default: 300 s)
RESPONSES = "/v1/responses"
OVERLOADED = {"kind": "status", "status": 529}
# The gateway's failover.retries in GATEWAY_CONFIG: a 529 is tried once more on the same backend.
PRIMARY_ATTEMPTS = 2

CONFIG_TOML = """\
model = "{route}"
model_provider = "switchyard"

[model_providers.switchyard]
name = "Switchyard e2e"
base_url = "{gateway}/v1"
wire_api = "responses"
env_key = "SWITCHYARD_CODEX_KEY"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {idle_ms}

[features]
plugins = false
unbounded_connection_retries = false
"""


# --------------------------------------------------------------------------- the CLI


def _find_codex() -> Path | None:
    raw = os.environ.get("CODEX_BIN")
    if raw:
        return Path(raw)
    # Where scripts/test installs it (the platform package npm picked, any target triple).
    root = REPO_ROOT / ".agents" / f"codex-{CODEX_VERSION}" / "node_modules" / "@openai"
    for candidate in sorted(root.glob("codex-*/vendor/*/bin/codex")):
        return candidate
    return None


@pytest.fixture(scope="session")
def codex_bin(tmp_path_factory) -> Path:
    path = _find_codex()
    if path is None or not (path.is_file() and os.access(path, os.X_OK)):
        missing_agent(
            f"Codex {CODEX_VERSION} not found (CODEX_BIN={os.environ.get('CODEX_BIN')!r}); "
            "scripts/test installs it with npm into .agents/ and exports CODEX_BIN"
        )
    home = tmp_path_factory.mktemp("codex-version")
    out = subprocess.run(
        [str(path), "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(home), "CODEX_HOME": str(home / ".codex")},
    )
    assert out.returncode == 0 and out.stdout.strip() == f"codex-cli {CODEX_VERSION}", (
        f"{path} --version: rc={out.returncode} stdout={out.stdout!r} stderr={out.stderr!r}"
    )
    return path


class Codex:
    """One Codex user: its own HOME / CODEX_HOME (config.toml, sessions) and work directory."""

    def __init__(self, bin_path: Path, gateway: str, home: Path, route: str = ROUTE):
        self.bin = bin_path
        self.work = home / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            CONFIG_TOML.format(route=route, gateway=gateway, idle_ms=CODEX_IDLE_TIMEOUT_S * 1000)
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "CODEX_", "RUST_LOG"))
        }
        env.update(HOME=str(home), CODEX_HOME=str(codex_home), SWITCHYARD_CODEX_KEY="sk-codex-e2e-dummy")
        self.env = env

    def exec(self, *args: str) -> subprocess.CompletedProcess:
        """`codex exec ARGS`; its stdout is the final answer, its stderr the transcript."""
        argv = [str(self.bin), "exec", "--strict-config", "--skip-git-repo-check", "--color", "never", *args]
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env,
                cwd=str(self.work),
                timeout=RUN_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(
                f"{argv} did not finish in {RUN_TIMEOUT_S:.0f}s\nstdout: {e.stdout!r}\nstderr: {e.stderr!r}",
                pytrace=False,
            )
        assert done.returncode == 0, (
            f"{argv} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return done


@pytest.fixture
def codex(codex_bin, tmp_path):
    """A factory: ``codex(gateway)`` is a fresh Codex user pointed at that gateway (and at
    ``route``, ``codex-main`` unless given)."""
    return lambda gateway, route=ROUTE: Codex(codex_bin, gateway, tmp_path / "codex", route)


# --------------------------------------------------------------------------- helpers


def scrape(gateway: str) -> dict:
    text = urllib.request.urlopen(gateway + "/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def metric(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def turn_id(recorded: dict) -> str:
    """Codex's turn id as it reached the upstream. The gateway reads the turn from the
    `x-codex-turn-metadata` header, which it does not forward (README "What goes upstream");
    Codex puts the same ids in the body's `client_metadata`, which is passed through."""
    meta = json_body(recorded).get("client_metadata") or {}
    assert meta.get("turn_id"), f"no client_metadata.turn_id: {meta!r}"
    return meta["turn_id"]


def input_items(recorded: dict, kind: str) -> list[dict]:
    return [i for i in json_body(recorded).get("input", []) if i.get("type") == kind]


# --------------------------------------------------------------------------- tests


def test_codex_gets_the_fallbacks_answer_when_the_primary_is_overloaded(codex, gateway, primary, fallback):
    """r-primary answers 529 to everything: `codex exec "Say hello"` exits 0 and prints the
    answer of r-fallback, which served the one model call (with its own model name)."""
    started = time.monotonic()
    set_plan(primary, [], then=OVERLOADED)

    done = codex(gateway).exec("Say hello")
    assert done.stdout.strip() == "Hello from fallback", done.stdout

    assert stats(primary)["by_path"] == {RESPONSES: PRIMARY_ATTEMPTS}, stats(primary)
    fb = stats(fallback)
    assert fb["by_path"] == {RESPONSES: 1} and fb["completed"] == 1, fb
    (served,) = requests(fallback)
    body = json_body(served)
    assert body["model"] == "gpt-5-mini", "the chain entry's model, not the route name"
    assert body["stream"] is True
    assert "Say hello" in json.dumps(body["input"])
    assert turn_id(served), "Codex names its turn"

    m = scrape(gateway)
    assert metric(m, "switchyard_requests_total", route=ROUTE, backend="r-fallback", outcome="served") == 1
    assert metric(m, "switchyard_requests_total", route=ROUTE) == 1
    assert metric(m, "switchyard_failovers_total", route=ROUTE, **{"from": "r-primary"}, to="r-fallback") == 1
    assert metric(m, "switchyard_attempts_total", backend="r-primary", result="overloaded") == PRIMARY_ATTEMPTS

    elapsed = time.monotonic() - started
    assert elapsed < 20, f"took {elapsed:.1f}s"


def test_codex_gets_the_fallbacks_answer_when_the_primary_stalls_before_the_first_token(
    codex, gateway, primary, fallback
):
    """r-primary sends its response headers, then only heartbeats. The gateway gives up on it
    at its ttft_timeout (2 s) and streams r-fallback's answer; Codex, whose own idle timeout is
    20 s here (300 s by default), never notices: it prints the answer within a few seconds."""
    set_plan(primary, [], then={"kind": "stall", "after_chunks": 0, "heartbeat_ms": 100})
    cx = codex(gateway)

    started = time.monotonic()
    done = cx.exec("Say hello")
    elapsed = time.monotonic() - started
    assert done.stdout.strip() == "Hello from fallback", done.stdout
    assert elapsed >= TTFT_TIMEOUT_S - 0.2, f"answered in {elapsed:.1f}s: did the primary stall at all?"
    bound = TTFT_TIMEOUT_S + 4
    assert elapsed < bound, (
        f"took {elapsed:.1f}s; expected the ttft_timeout ({TTFT_TIMEOUT_S:.0f}s) plus a little, "
        f"under {bound:.0f}s (Codex's idle timeout here: {CODEX_IDLE_TIMEOUT_S}s)"
    )

    p = stats(primary)
    assert p["by_path"] == {RESPONSES: 1}, f"a stall is not retried on the same backend: {p}"
    assert p["cancelled"] == 1 and p["in_flight"] == 0, f"the gateway hung up on the stall: {p}"
    assert stats(fallback)["by_path"] == {RESPONSES: 1}
    m = scrape(gateway)
    assert metric(m, "switchyard_attempts_total", backend="r-primary", result="timeout") == 1
    assert metric(m, "switchyard_requests_total", route=ROUTE, backend="r-fallback", outcome="served") == 1


def test_codex_tool_call_round_trip_stays_on_the_fallback(codex, gateway_with, primary, fallback):
    """r-fallback's first reply is a call of Codex's shell tool `exec_command` (the tool name in
    the captured requests, tests/it/fixtures/agents/codex/); Codex runs it (approvals and
    sandbox bypassed, so it runs non-interactively) and sends the output back in a
    `function_call_output` item. That follow-up belongs to the turn whose first call failed
    on r-primary (same `turn_id` in x-codex-turn-metadata), so it goes to r-fallback too,
    although r-primary's cooldown (10 ms) is long over and it would answer now."""
    started = time.monotonic()
    gateway = gateway_with("health: { cooldown: { base: 10ms, max: 10ms } }\n")
    set_plan(primary, [OVERLOADED] * PRIMARY_ATTEMPTS, then={"kind": "ok"})
    set_plan(
        fallback,
        [{"kind": "ok", "tool_call": {"name": "exec_command", "arguments": {"cmd": "echo codex-tool-ran"}}}],
        then={"kind": "ok"},
    )

    done = codex(gateway).exec("--dangerously-bypass-approvals-and-sandbox", "Run echo codex-tool-ran")
    assert done.stdout.strip() == "Hello from fallback", f"stdout: {done.stdout}\nstderr: {done.stderr}"

    first, follow_up = requests(fallback)
    assert not input_items(first, "function_call_output")
    (call,) = input_items(follow_up, "function_call")
    assert call["name"] == "exec_command", call
    (output,) = input_items(follow_up, "function_call_output")
    assert output["call_id"] == call["call_id"], (call, output)
    assert "codex-tool-ran" in output["output"], f"the tool ran: {output!r}"
    assert turn_id(first) == turn_id(follow_up), "one turn"

    on_primary = requests(primary)
    assert len(on_primary) == PRIMARY_ATTEMPTS, "only the turn's first call reached r-primary (529s)"
    assert not any(input_items(r, "function_call_output") for r in on_primary), "the follow-up did not"

    elapsed = time.monotonic() - started
    assert elapsed < 20, f"took {elapsed:.1f}s"


def test_codex_fails_over_to_an_anthropic_backend_tool_call_included(codex, gateway, primary, fallback):
    """Route ``codex-claude``: r-primary (Responses) answers 529, the fallback speaks Anthropic
    messages. Codex's requests are translated (its apply_patch, tool_search and cached-only
    web_search dropped, named in x-switchyard-dropped-tools), the fallback's tool_use comes back
    as a function call Codex runs, and its output goes back as a tool_result."""
    set_plan(primary, [], then=OVERLOADED)
    set_plan(
        fallback,
        [{"kind": "ok", "tool_call": {"name": "exec_command", "arguments": {"cmd": "echo codex-over-claude"}}}],
        then={"kind": "ok"},
    )
    done = codex(gateway, "codex-claude").exec(
        "--dangerously-bypass-approvals-and-sandbox", "Run echo codex-over-claude"
    )
    assert done.stdout.strip() == "Hello from fallback", f"stdout: {done.stdout}\nstderr: {done.stderr}"

    first, follow_up = requests(fallback)
    assert first["path"] == "/v1/messages" and follow_up["path"] == "/v1/messages"
    body = json_body(first)
    assert body["model"] == "claude-sonnet-4-5"
    names = [t["name"] for t in body["tools"]]
    assert "exec_command" in names, names
    blocks = [b for m in json_body(follow_up)["messages"] if isinstance(m["content"], list) for b in m["content"]]
    (use,) = [b for b in blocks if b["type"] == "tool_use"]
    (result,) = [b for b in blocks if b["type"] == "tool_result"]
    assert use["name"] == "exec_command" and result["tool_use_id"] == use["id"]
    assert "codex-over-claude" in json.dumps(result["content"]), result


def test_codex_edits_a_file_with_apply_patch_through_an_anthropic_fallback(codex, gateway, primary, fallback):
    """Codex's own file-editing tool is freeform (`custom`); over an Anthropic fallback it is
    offered as a function taking `{input}`, and the fallback's call comes back to Codex as the
    `custom_tool_call` it expects (a `function_call` of it Codex refuses): Codex applies the
    patch and the file exists."""
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi from the fallback\n*** End Patch\n"
    set_plan(primary, [], then=OVERLOADED)
    set_plan(
        fallback,
        [{"kind": "ok", "tool_call": {"name": "apply_patch", "arguments": {"input": patch}}}],
        then={"kind": "ok"},
    )
    # A route named as a model Codex knows: Codex offers apply_patch only to known models.
    cx = codex(gateway, "gpt-5.5")
    done = cx.exec("--dangerously-bypass-approvals-and-sandbox", "Create hello.txt")
    first = requests(fallback)[0]
    offered = {t["name"]: t for t in json_body(first)["tools"]}
    assert "apply_patch" in offered, sorted(offered)
    assert "*** Begin Patch" in offered["apply_patch"]["description"], "its grammar travels along"
    assert done.stdout.strip() == "Hello from fallback", f"stdout: {done.stdout}\nstderr: {done.stderr}"
    assert (cx.work / "hello.txt").read_text() == "hi from the fallback\n", done.stderr[-2000:]
    follow_up = requests(fallback)[-1]
    blocks = [b for m in json_body(follow_up)["messages"] if isinstance(m["content"], list) for b in m["content"]]
    (use,) = [b for b in blocks if b["type"] == "tool_use"]
    assert use["name"] == "apply_patch" and use["input"] == {"input": patch}
    (result,) = [b for b in blocks if b["type"] == "tool_result"]
    assert result["tool_use_id"] == use["id"]
