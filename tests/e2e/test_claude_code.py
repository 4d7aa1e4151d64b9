"""The real Claude Code CLI (print mode) through the gateway.

Claude Code is installed by scripts/test (a pinned npm package, see there) and found through
``CLAUDE_CODE_BIN`` (its native binary), else in the ignored ``.agents/`` directory where
scripts/test puts it. Without it the tests skip locally with a message, and fail under CI
(``CI=true``): CI must not pass silently without the real agent.

Claude Code runs offline: an empty config/home directory per test, a dummy API key,
``ANTHROPIC_BASE_URL`` = the gateway, ``ANTHROPIC_MODEL`` = the route ``claude-main``
(primary first, fallback second; see conftest.GATEWAY_CONFIG), telemetry, error reporting,
the auto-updater and all non-essential traffic off. Each ``-p`` run sends exactly one
``POST /v1/messages?beta=true`` per model round trip, with its session id in
``x-claude-code-session-id`` (stable across ``--continue``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, alerts_yaml, json_body, missing_agent, requests, set_plan, stats

CLAUDE_CODE_VERSION = "2.1.332"
ROUTE = "claude-main"  # the anthropic chain of GATEWAY_CONFIG: primary, then fallback
RUN_TIMEOUT_S = 60.0
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UNAUTHORIZED = {"kind": "status", "status": 401}
# The second run is a new turn: what keeps it off the primary is the primary's cooldown after
# the give-up on its 401. The default (5 s) could end between two runs on a loaded box.
LONG_COOLDOWN = "health: { cooldown: { base: 60s, max: 60s } }\n"


# --------------------------------------------------------------------------- the CLI


def _find_claude_code() -> Path | None:
    raw = os.environ.get("CLAUDE_CODE_BIN")
    if raw:
        return Path(raw)
    # Where scripts/test installs it (any platform package of the pinned version).
    root = REPO_ROOT / ".agents" / f"claude-code-{CLAUDE_CODE_VERSION}" / "node_modules" / "@anthropic-ai"
    for candidate in sorted(root.glob("claude-code-*/claude")):
        return candidate
    return None


@pytest.fixture(scope="session")
def claude_code_bin() -> Path:
    path = _find_claude_code()
    if path is None or not (path.is_file() and os.access(path, os.X_OK)):
        why = (
            f"Claude Code {CLAUDE_CODE_VERSION} not found "
            f"(CLAUDE_CODE_BIN={os.environ.get('CLAUDE_CODE_BIN')!r}); scripts/test installs it "
            "with npm into .agents/ and exports CLAUDE_CODE_BIN"
        )
        missing_agent(why)
    out = subprocess.run(
        [str(path), "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and CLAUDE_CODE_VERSION in out.stdout, (
        f"{path} --version: rc={out.returncode} stdout={out.stdout!r} stderr={out.stderr!r}"
    )
    return path


class ClaudeCode:
    """One Claude Code user: its own home/config directory and project directory, so
    ``--continue`` finds the conversation of the previous run and nothing else."""

    def __init__(self, bin_path: Path, gateway: str, home: Path):
        self.bin = bin_path
        self.home = home
        self.project = home / "project"
        self.project.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ANTHROPIC_", "CLAUDE", "OTEL_", "DISABLE_"))
        }
        env.update(
            HOME=str(home),
            CLAUDE_CONFIG_DIR=str(home / ".claude"),
            ANTHROPIC_BASE_URL=gateway,
            ANTHROPIC_API_KEY="sk-ant-e2e-dummy",
            ANTHROPIC_MODEL=ROUTE,
            DISABLE_TELEMETRY="1",
            DISABLE_ERROR_REPORTING="1",
            DISABLE_AUTOUPDATER="1",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        )
        self.env = env

    def run(self, *args: str) -> subprocess.CompletedProcess:
        argv = [str(self.bin), *args]
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env,
                cwd=str(self.project),
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


def answered(mock_url: str) -> list[dict]:
    """The requests the mock accepted and answered by its plan (with a status or a reply).

    Claude Code 2.1.332 does not know the model name ``claude-main`` (a route name), and its
    first call sends the mid-conversation ``role: "system"`` message *without* the beta that
    allows it (``per-turn-control-…``, sent for models it knows); the API (and the mock, which
    validates like it) answers 400, the gateway returns that to the client without failing
    over (the client's fault), and Claude Code sends the call again without the system message
    (and, in a later ``--continue`` run, no longer tries it: seen with 2.1.332). Those rejected
    calls are counted by the mock but are not model calls; this keeps the others."""
    out = []
    for r in requests(mock_url):
        body = json_body(r)
        if not any(m.get("role") == "system" for m in body.get("messages", [])):
            out.append(r)
    return out


def claude_code_sessions(cc: "ClaudeCode") -> set[str]:
    """The ids of the sessions Claude Code stored (one transcript file per session, named by
    the uuid it sends in x-claude-code-session-id)."""
    return {f.stem for f in (cc.home / ".claude" / "projects").glob("*/*.jsonl")}


# --------------------------------------------------------------------------- tests


def test_claude_code_falls_back_on_401_and_its_continued_session_skips_the_primary(
    claude_code_bin, gateway_with, webhook, primary, fallback, tmp_path
):
    """Primary answers 401 to everything. `claude -p` prints the fallback's answer; the
    `--continue` run a moment later (a new turn of the same session; the primary is cooling
    down after the give-up on its 401) never reaches the primary. Both runs raise a
    `fallback_activated` alert naming the session `claude_code:<uuid>` and `claude-cli`."""
    started = time.monotonic()
    gateway = gateway_with(alerts_yaml(webhook.url) + LONG_COOLDOWN)
    set_plan(primary, [], then=UNAUTHORIZED)
    cc = ClaudeCode(claude_code_bin, gateway, tmp_path / "cc")

    first = cc.run("-p", "Say hello")
    assert first.stdout.strip() == "Hello from fallback", first.stdout
    assert len(answered(primary)) == 1, "one attempt on the primary: a 401 is not retried"
    assert len(answered(fallback)) == 1, "the fallback served the model call"
    primary_seen = stats(primary)["requests"]  # with Claude Code's rejected first call

    (sid,) = claude_code_sessions(cc)
    assert UUID.match(sid), sid
    (alert1,) = webhook.wait_for("fallback_activated", 1)
    assert alert1["session"] == f"claude_code:{sid}", (alert1, sid)
    assert alert1["platform"] == "claude-cli", alert1
    assert alert1["route"] == ROUTE, alert1
    assert alert1["primary"] == {"backend": "primary", "model": "claude-opus-4-7"}, alert1
    assert alert1["serving"] == {"backend": "fallback", "model": "claude-sonnet-4-5"}, alert1
    assert alert1["reason"] == "auth 401", alert1

    second = cc.run("-p", "Say hello again", "--continue")
    assert second.stdout.strip() == "Hello from fallback", second.stdout
    assert stats(primary)["requests"] == primary_seen, "the --continue run never reaches the primary"
    assert len(answered(fallback)) == 2
    last = json_body(answered(fallback)[-1])
    assert "Say hello again" in json.dumps(last["messages"][-1]), "the second prompt was served"
    assert "Hello from fallback" in json.dumps(last["messages"]), "with the first answer in its history"

    assert claude_code_sessions(cc) == {sid}, "--continue keeps Claude Code's session"
    _, alert2 = webhook.wait_for("fallback_activated", 2)
    assert alert2["session"] == f"claude_code:{sid}", (alert1, alert2)
    assert alert2["platform"] == "claude-cli", alert2
    assert alert2["serving"]["backend"] == "fallback", alert2
    assert alert2["reason"].startswith("primary skipped"), alert2

    elapsed = time.monotonic() - started
    assert elapsed < 30, f"took {elapsed:.1f}s"


def test_claude_code_tool_loop_stays_off_the_primary_its_turn_failed_on(
    claude_code_bin, gateway_with, primary, fallback, tmp_path
):
    """The turn, not the cooldown: with a 10 ms cooldown the primary is healthy again long
    before Claude Code sends its tool result, and the primary would now answer. The tool-loop
    call belongs to the turn whose main call failed on the primary, so it goes to the fallback.
    The next prompt (`--continue`, a new turn) goes back to the recovered primary."""
    started = time.monotonic()
    gateway = gateway_with("health: { cooldown: { base: 10ms, max: 10ms } }\n")
    set_plan(primary, [UNAUTHORIZED], then={"kind": "ok"})
    set_plan(
        fallback,
        [{"kind": "ok", "tool_call": {"name": "Bash", "arguments": {"command": "echo e2e-tool-ran"}}}],
        then={"kind": "ok"},
    )
    cc = ClaudeCode(claude_code_bin, gateway, tmp_path / "cc")

    first = cc.run("-p", "Run echo e2e-tool-ran", "--allowedTools", "Bash(echo:*)")
    assert first.stdout.strip() == "Hello from fallback", first.stdout
    assert len(answered(primary)) == 1, "only the turn's first call reached the primary (401)"
    calls = answered(fallback)
    assert len(calls) == 2, "the main call and the tool-loop call, both on the fallback"
    results = [
        b
        for m in json_body(calls[1])["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert results and "e2e-tool-ran" in json.dumps(results), f"the tool ran: {results!r}"

    second = cc.run("-p", "Say hello again", "--continue")
    assert second.stdout.strip() == "Hello from primary", second.stdout
    assert len(answered(primary)) == 2, "a new turn goes back to the recovered primary"
    assert len(answered(fallback)) == 2

    elapsed = time.monotonic() - started
    assert elapsed < 30, f"took {elapsed:.1f}s"


def test_claude_codes_context_command_counts_tokens_on_the_fallback(claude_code_bin, gateway, primary, fallback, tmp_path):
    """`claude -p /context` counts the tokens of its system prompt sections and tools with
    ~25 `POST /v1/messages/count_tokens?beta=true` calls (captured in
    tests/it/fixtures/agents/claude_code/14_…, 15_…). The primary is overloaded: every count
    is answered by the fallback, Claude Code prints its context table, and the primary's
    health is untouched by a side endpoint."""
    set_plan(primary, [], then={"kind": "status", "status": 529})
    cc = ClaudeCode(claude_code_bin, gateway, tmp_path / "cc")
    done = cc.run("-p", "/context")
    assert "Built-in" in done.stdout or "tokens" in done.stdout.lower(), done.stdout
    counted = [r for r in requests(fallback) if r["path"].startswith("/v1/messages/count_tokens")]
    assert len(counted) >= 5, [r["path"] for r in requests(fallback)]
    assert all(json_body(r)["model"] == "claude-sonnet-4-5" for r in counted), "the chain entry's model"
