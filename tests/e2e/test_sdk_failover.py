"""Failover as the official OpenAI and Anthropic SDKs see it.

Each test talks to the gateway with an unmodified SDK (its own retries off) and
programs the mock upstreams behind it.  Routes (see conftest.GATEWAY_CONFIG):

  gpt-main    -> oa-primary  (primary mock,  gpt-4o)       -> oa-fallback (fallback mock, gpt-4o-mini)
  claude-main -> primary     (primary mock,  claude-opus-4-7) -> fallback (fallback mock, claude-sonnet-4-5)
"""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from conftest import (
    FALLBACK_KEY,
    PRIMARY_KEY,
    TTFT_TIMEOUT_S,
    all_header_values,
    header_values,
    json_body,
    requests,
    set_plan,
    stats,
)

SDK_TIMEOUT_S = 20.0
CLIENT_KEY = "client-key-must-not-leak"
PROMPT = [{"role": "user", "content": "Say hello"}]

OVERLOADED = {"kind": "status", "status": 529}
STALL = {"kind": "stall", "after_chunks": 0, "heartbeat_ms": 200}

ANTHROPIC_OVERFLOW_MESSAGE = "prompt is too long: 250000 tokens > 200000 maximum"
ANTHROPIC_OVERFLOW = {
    "kind": "status",
    "status": 400,
    "body": {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": ANTHROPIC_OVERFLOW_MESSAGE},
    },
}
OPENAI_OVERFLOW_MESSAGE = (
    "This model's maximum context length is 128000 tokens. "
    "However, your messages resulted in 130000 tokens."
)
OPENAI_OVERFLOW = {
    "kind": "status",
    "status": 400,
    "body": {
        "error": {
            "message": OPENAI_OVERFLOW_MESSAGE,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
}

# Failover on a stall must happen once ttft_timeout has passed, not much later.
STALL_BUDGET_S = TTFT_TIMEOUT_S + 1.5


# --------------------------------------------------------------------------- clients


@pytest.fixture
def oa(gateway) -> openai.OpenAI:
    client = openai.OpenAI(
        base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=SDK_TIMEOUT_S
    )
    yield client
    client.close()


@pytest.fixture
def an(gateway) -> anthropic.Anthropic:
    client = anthropic.Anthropic(
        base_url=gateway, api_key=CLIENT_KEY, max_retries=0, timeout=SDK_TIMEOUT_S
    )
    yield client
    client.close()


# --------------------------------------------------------------------------- call helpers
# Each returns (answer text, response headers) after consuming the whole response.


def openai_call(oa: openai.OpenAI, stream: bool, model: str = "gpt-main"):
    raw = oa.chat.completions.with_raw_response.create(model=model, messages=PROMPT, stream=stream)
    if not stream:
        completion = raw.parse()
        assert completion.choices, f"no choices in {completion!r}"
        return completion.choices[0].message.content, raw.headers
    chunks = list(raw.parse())  # the SDK parses every SSE event into a ChatCompletionChunk
    assert chunks, "stream had no chunks"
    for chunk in chunks:
        assert isinstance(chunk, openai.types.chat.ChatCompletionChunk), chunk
        assert chunk.object == "chat.completion.chunk", chunk
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes, f"stream ended without a finish_reason: {chunks!r}"
    return text, raw.headers


def anthropic_call(an: anthropic.Anthropic, stream: bool, model: str = "claude-main"):
    if not stream:
        raw = an.messages.with_raw_response.create(model=model, max_tokens=64, messages=PROMPT)
        message = raw.parse()
        text = "".join(b.text for b in message.content if b.type == "text")
        return text, raw.headers
    with an.messages.stream(model=model, max_tokens=64, messages=PROMPT) as s:
        headers = s.response.headers
        events = list(s)  # the SDK parses and accumulates every event
        final = s.get_final_message()
    types = [e.type for e in events]
    assert types and types[0] == "message_start", f"stream must open with message_start: {types}"
    assert types.count("message_start") == 1, f"one message per stream, got: {types}"
    assert "message_stop" in types, f"stream never finished: {types}"
    deltas = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    final_text = "".join(b.text for b in final.content if b.type == "text")
    assert deltas == final_text, (deltas, final_text)
    assert final.stop_reason is not None, final
    return deltas, headers


def call(dialect: str, clients: dict, stream: bool, model: str | None = None):
    if dialect == "openai":
        return openai_call(clients["openai"], stream, **({"model": model} if model else {}))
    return anthropic_call(clients["anthropic"], stream, **({"model": model} if model else {}))


@pytest.fixture
def clients(oa, an) -> dict:
    return {"openai": oa, "anthropic": an}


# Backend names in the gateway config, per dialect.
BACKEND = {
    "openai": {"primary": "oa-primary", "fallback": "oa-fallback"},
    "anthropic": {"primary": "primary", "fallback": "fallback"},
}
UPSTREAM_PATH = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
CHAIN_MODEL = {
    "openai": {"primary": "gpt-4o", "fallback": "gpt-4o-mini"},
    "anthropic": {"primary": "claude-opus-4-7", "fallback": "claude-sonnet-4-5"},
}

DIALECTS = pytest.mark.parametrize("dialect", ["openai", "anthropic"])
MODES = pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])


def api_requests(mock_url: str, dialect: str) -> list[dict]:
    return [r for r in requests(mock_url) if r.get("path") == UPSTREAM_PATH[dialect]]


# --------------------------------------------------------------------------- healthy path


@DIALECTS
@MODES
def test_healthy_primary_answers_without_failover(dialect, stream, clients, primary, fallback):
    text, headers = call(dialect, clients, stream)
    assert text == "Hello from primary"
    assert headers.get("x-switchyard-backend") == BACKEND[dialect]["primary"]
    assert headers.get("x-switchyard-attempts") == "1"
    assert headers.get("x-request-id"), "every response carries x-request-id"
    assert stats(primary)["requests"] == 1
    assert stats(fallback)["requests"] == 0


# --------------------------------------------------------------------------- 529 → fallback


@DIALECTS
@MODES
def test_primary_overloaded_529_fails_over_to_fallback(dialect, stream, clients, primary, fallback):
    set_plan(primary, [], then=OVERLOADED)
    text, headers = call(dialect, clients, stream)
    assert text == "Hello from fallback"
    assert headers.get("x-switchyard-backend") == BACKEND[dialect]["fallback"]
    assert int(headers.get("x-switchyard-attempts", "0")) >= 2, dict(headers)
    assert headers.get("x-request-id")
    assert stats(primary)["requests"] >= 1, "the primary must have been tried first"
    assert stats(fallback)["requests"] >= 1


# --------------------------------------------------------------------------- stall → fallback


@DIALECTS
@MODES
def test_primary_stall_fails_over_within_ttft_timeout(dialect, stream, clients, primary, fallback):
    set_plan(primary, [], then=STALL)
    t0 = time.monotonic()
    text, headers = call(dialect, clients, stream)
    elapsed = time.monotonic() - t0
    assert text == "Hello from fallback"
    assert headers.get("x-switchyard-backend") == BACKEND[dialect]["fallback"]
    assert elapsed < STALL_BUDGET_S, f"failover took {elapsed:.2f}s, budget {STALL_BUDGET_S}s"
    assert stats(primary)["requests"] >= 1
    assert stats(fallback)["requests"] >= 1


@DIALECTS
@MODES
def test_abandoned_stalled_primary_request_is_cancelled(dialect, stream, clients, primary, fallback):
    """After failing over, the gateway drops its connection to the stalled primary (no leak)."""
    set_plan(primary, [], then=STALL)
    text, _ = call(dialect, clients, stream)
    assert text == "Hello from fallback"
    deadline = time.monotonic() + 3.0
    s = stats(primary)
    while (s["in_flight"] != 0 or s["cancelled"] < 1) and time.monotonic() < deadline:
        time.sleep(0.1)
        s = stats(primary)
    assert s["in_flight"] == 0 and s["cancelled"] >= 1, f"stalled upstream request still open: {s}"


# --------------------------------------------------------------------------- context overflow: returned, not failed over


@MODES
def test_anthropic_context_overflow_is_returned_not_failed_over(stream, an, primary, fallback):
    set_plan(primary, [], then=ANTHROPIC_OVERFLOW)
    with pytest.raises(anthropic.BadRequestError) as ei:
        anthropic_call(an, stream)
    err = ei.value
    assert err.status_code == 400
    assert ANTHROPIC_OVERFLOW_MESSAGE in str(err)
    assert isinstance(err.body, dict), err.body
    assert err.body.get("error", {}).get("type") == "invalid_request_error", err.body
    assert ANTHROPIC_OVERFLOW_MESSAGE in err.body["error"].get("message", ""), err.body
    assert stats(primary)["requests"] >= 1
    assert stats(fallback)["requests"] == 0, "a context overflow must not be sent to the fallback"


@MODES
def test_openai_context_overflow_is_returned_not_failed_over(stream, oa, primary, fallback):
    set_plan(primary, [], then=OPENAI_OVERFLOW)
    with pytest.raises(openai.BadRequestError) as ei:
        openai_call(oa, stream)
    err = ei.value
    assert err.status_code == 400
    assert OPENAI_OVERFLOW_MESSAGE in str(err)
    assert err.code == "context_length_exceeded", err.body
    assert err.type == "invalid_request_error", err.body
    assert stats(primary)["requests"] >= 1
    assert stats(fallback)["requests"] == 0, "a context overflow must not be sent to the fallback"


# --------------------------------------------------------------------------- everything down → 502


@DIALECTS
@MODES
def test_all_backends_overloaded_returns_502(dialect, stream, clients, primary, fallback):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [], then=OVERLOADED)
    error_class = openai.APIStatusError if dialect == "openai" else anthropic.APIStatusError
    with pytest.raises(error_class) as ei:
        call(dialect, clients, stream)
    assert ei.value.status_code == 502, (ei.value.status_code, ei.value.body)
    assert stats(primary)["requests"] >= 1
    assert stats(fallback)["requests"] >= 1, "the fallback must be tried before giving up"


# --------------------------------------------------------------------------- unknown model → 404


@DIALECTS
@MODES
def test_unknown_model_is_404_not_found(dialect, stream, clients, primary, fallback):
    error_class = openai.NotFoundError if dialect == "openai" else anthropic.NotFoundError
    with pytest.raises(error_class) as ei:
        call(dialect, clients, stream, model="no-such-route")
    assert ei.value.status_code == 404
    assert stats(primary)["requests"] == 0, "an unknown model must not reach any upstream"
    assert stats(fallback)["requests"] == 0


# --------------------------------------------------------------------------- upstream credentials and model


def _assert_upstream_request(recorded: dict, dialect: str, key: str, model: str) -> None:
    if dialect == "openai":
        assert header_values(recorded, "authorization") == [f"Bearer {key}"], recorded["headers"]
    else:
        assert header_values(recorded, "x-api-key") == [key], recorded["headers"]
        assert not header_values(recorded, "authorization"), recorded["headers"]
    leaked = [v for v in all_header_values(recorded) if CLIENT_KEY in v]
    assert not leaked, f"client's key reached the upstream: {leaked}"
    assert json_body(recorded).get("model") == model


@DIALECTS
def test_upstream_gets_backend_key_and_chain_model_not_clients(dialect, clients, primary, fallback):
    text, _ = call(dialect, clients, stream=False)
    assert text == "Hello from primary"
    seen = api_requests(primary, dialect)
    assert len(seen) == 1, seen
    _assert_upstream_request(seen[0], dialect, PRIMARY_KEY, CHAIN_MODEL[dialect]["primary"])


@DIALECTS
def test_fallback_gets_its_own_key_and_chain_model(dialect, clients, primary, fallback):
    set_plan(primary, [], then=OVERLOADED)
    text, _ = call(dialect, clients, stream=True)
    assert text == "Hello from fallback"
    for recorded in api_requests(primary, dialect):
        _assert_upstream_request(recorded, dialect, PRIMARY_KEY, CHAIN_MODEL[dialect]["primary"])
    seen = api_requests(fallback, dialect)
    assert len(seen) == 1, seen
    _assert_upstream_request(seen[0], dialect, FALLBACK_KEY, CHAIN_MODEL[dialect]["fallback"])
