"""The real Hermes agent (``hermes-agent`` from PyPI, one-shot ``chat -q``) through the gateway.

Hermes is installed by scripts/test into its own venv in the ignored ``.agents/`` directory
(it pins an ``openai`` SDK of its own, so it stays out of .venv) and found through
``HERMES_BIN``, else there. Without it the tests skip locally with a message and fail under
CI (``CI=true``).

Hermes runs offline: an empty home per test, the ``custom`` provider with
``CUSTOM_BASE_URL`` = the gateway's /v1 and a dummy ``OPENAI_API_KEY``, the model = the route
``gpt-main`` (oa-primary first, oa-fallback second; see conftest.GATEWAY_CONFIG), and its tirith
scanner off (else it tries to download it from GitHub on the first run, ~6 s). Before its
first model call it probes ~20 model/props endpoints (404 from the gateway is fine), then
sends ``POST /v1/chat/completions`` with the OpenAI SDK's User-Agent and no session id of any
kind: the gateway derives the session from the conversation (README, "Sessions and turns").
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

HERMES_VERSION = "0.19.0"
ROUTE = "gpt-main"
RUN_TIMEOUT_S = 60.0
CONVERSATION = re.compile(r"^conversation:[0-9a-f]{16}$")
HERMES_SESSION = re.compile(r"session_id: (\d{8}_\d{6}_[0-9a-f]{6})")
CHAT = "/v1/chat/completions"
# The second run is a new turn: what keeps it off the primary is the primary's cooldown after
# the give-up on its 401. The default (5 s) could end between two runs on a loaded box.
LONG_COOLDOWN = "health: { cooldown: { base: 60s, max: 60s } }\n"


@pytest.fixture(scope="session")
def hermes_bin() -> Path:
    raw = os.environ.get("HERMES_BIN")
    path = Path(raw) if raw else REPO_ROOT / ".agents" / f"hermes-{HERMES_VERSION}" / "bin" / "hermes"
    if not (path.is_file() and os.access(path, os.X_OK)):
        missing_agent(
            f"Hermes {HERMES_VERSION} not found at {path} (HERMES_BIN={raw!r}); scripts/test "
            "installs it with pip into .agents/ and exports HERMES_BIN"
        )
    return path


class Hermes:
    """One Hermes user: its own HOME / HERMES_HOME (sessions, state.db) and work directory."""

    def __init__(self, bin_path: Path, gateway: str, home: Path):
        self.bin = bin_path
        self.work = home / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "ANTHROPIC_", "OPENROUTER_", "CUSTOM_", "HERMES_", "TIRITH_"))
        }
        env.update(
            HOME=str(home),
            HERMES_HOME=str(home / ".hermes"),
            CUSTOM_BASE_URL=f"{gateway}/v1",
            OPENAI_API_KEY="sk-hermes-e2e-dummy",
            TIRITH_ENABLED="false",
        )
        self.env = env

    def chat(self, prompt: str, *extra: str) -> subprocess.CompletedProcess:
        argv = [str(self.bin), "chat", "-q", prompt, *extra, "--provider", "custom", "-m", ROUTE, "--yolo", "-Q"]
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
        assert done.returncode == 0, f"{argv} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        return done


def hermes_session(done: subprocess.CompletedProcess) -> str:
    m = HERMES_SESSION.search(done.stderr + done.stdout)
    assert m, f"no session_id line:\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return m.group(1)


def test_hermes_falls_back_on_401_and_the_alert_names_its_conversation(
    hermes_bin, gateway_with, webhook, primary, fallback, tmp_path
):
    """oa-primary answers 401 to everything. `hermes chat -q` prints the fallback's answer and
    the `fallback_activated` alert names a `conversation:` session (Hermes sends no id) and the
    platform `OpenAI` (Hermes sends the OpenAI SDK's User-Agent). The same conversation
    continued (`--continue`) keeps that session and never reaches the cooling primary."""
    started = time.monotonic()
    gateway = gateway_with(alerts_yaml(webhook.url) + LONG_COOLDOWN)
    set_plan(primary, [], then={"kind": "status", "status": 401})
    hermes = Hermes(hermes_bin, gateway, tmp_path / "hermes")

    first = hermes.chat("Say hello")
    assert "Hello from fallback" in first.stdout, first.stdout
    assert stats(primary)["by_path"] == {CHAT: 1}, "one attempt on the primary: a 401 is not retried"
    assert stats(fallback)["by_path"] == {CHAT: 1}, "the fallback served the model call"
    call = json_body(requests(fallback)[-1])
    assert call["tools"], "a main-loop call (it offers tools): the conversation fingerprint applies"

    (alert1,) = webhook.wait_for("fallback_activated", 1)
    assert CONVERSATION.match(alert1["session"] or ""), alert1
    assert alert1["platform"] == "OpenAI", alert1
    assert alert1["route"] == ROUTE, alert1
    assert alert1["primary"] == {"backend": "oa-primary", "model": "gpt-4o"}, alert1
    assert alert1["serving"] == {"backend": "oa-fallback", "model": "gpt-4o-mini"}, alert1
    assert alert1["reason"] == "auth 401", alert1

    second = hermes.chat("Say hello again", "--continue")
    assert "Hello from fallback" in second.stdout, second.stdout
    assert hermes_session(second) == hermes_session(first), "Hermes resumed its session"
    assert stats(primary)["by_path"] == {CHAT: 1}, "the continued conversation never reaches the primary"
    assert stats(fallback)["by_path"] == {CHAT: 2}
    history = [m for m in json_body(requests(fallback)[-1])["messages"] if m["role"] != "system"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"], history
    assert "Hello from fallback" in json.dumps(history[1]), history

    _, alert2 = webhook.wait_for("fallback_activated", 2)
    assert alert2["session"] == alert1["session"], "one conversation, one session"
    assert alert2["platform"] == "OpenAI", alert2
    assert alert2["reason"].startswith("primary skipped"), alert2

    elapsed = time.monotonic() - started
    assert elapsed < 45, f"took {elapsed:.1f}s"
