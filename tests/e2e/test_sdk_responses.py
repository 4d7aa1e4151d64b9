"""The official openai SDK's Responses API (`client.responses`) through the gateway while the
primary fails: a same-dialect chain of `openai_responses` backends (`codex-main`) and one whose
fallback speaks Anthropic messages (`codex-claude`); and the official anthropic SDK over a chain
whose fallback speaks the Responses API (`an-over-resp`). Routes in conftest.GATEWAY_CONFIG."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import set_plan, stats

OVERLOADED = {"kind": "status", "status": 529}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather by city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]},
}
TOOL_CALL = {"kind": "ok", "tool_call": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}


def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="client-key", max_retries=0, timeout=20)


# (route, the backend that serves once the primary fails)
ROUTES = [("codex-main", "r-fallback"), ("codex-claude", "fallback")]


@pytest.mark.parametrize("route,served", ROUTES, ids=["responses", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_responses_fail_over_to_the_fallback(gateway, primary, fallback, stream, route, served):
    set_plan(primary, [], then=OVERLOADED)
    c = client(gateway)
    if stream:
        with c.responses.stream(model=route, input="Say hello") as s:
            final = s.get_final_response()
            served_by = s.response.headers["x-switchyard-backend"] if hasattr(s, "response") else None
        text = final.output_text
    else:
        raw = c.responses.with_raw_response.create(model=route, input="Say hello")
        served_by = raw.headers["x-switchyard-backend"]
        text = raw.parse().output_text
    assert text == "Hello from fallback"
    if served_by is not None:
        assert served_by == served
    assert stats(primary)["requests"] >= 1
    c.close()


@pytest.mark.parametrize("route,served", ROUTES, ids=["responses", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_a_function_call_round_trip_over_a_failover(gateway, primary, fallback, stream, route, served):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [TOOL_CALL], then={"kind": "ok"})
    c = client(gateway)
    first = dict(model=route, input="What is the weather in Paris?", tools=[WEATHER_TOOL], store=False)
    if stream:
        with c.responses.stream(**first) as s:
            resp = s.get_final_response()
    else:
        resp = c.responses.create(**first)
    calls = [item for item in resp.output if item.type == "function_call"]
    assert len(calls) == 1, resp.output
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    # The tool's result goes back with the whole input (store: false), as Codex CLI does.
    follow_up = c.responses.create(
        model=route,
        store=False,
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
        ],
    )
    assert follow_up.output_text == "Hello from fallback"
    c.close()


def test_an_exhausted_chain_raises_with_the_report(gateway, primary, fallback):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [], then={"kind": "status", "status": 401})
    with pytest.raises(openai.APIStatusError) as ei:
        client(gateway).responses.create(model="codex-main", input="Say hello")
    assert ei.value.status_code == 502
    assert ei.value.body["type"] == "fallback_exhausted"
    assert [f["backend"] for f in ei.value.body["failures"]] == ["r-primary", "r-fallback"]


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_an_anthropic_client_fails_over_to_a_responses_backend(gateway, primary, fallback, stream):
    """The anthropic SDK (Claude Code's dialect) on `an-over-resp`: the Anthropic primary is
    overloaded, the Responses fallback answers, tool call included, in the Messages shape."""
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [TOOL_CALL], then={"kind": "ok"})
    c = anthropic.Anthropic(base_url=gateway, api_key="client-key", max_retries=0, timeout=20)
    tool = {"name": "get_weather", "description": "Weather by city", "input_schema": WEATHER_TOOL["parameters"]}
    ask = dict(model="an-over-resp", max_tokens=256, tools=[tool],
               messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    if stream:
        with c.messages.stream(**ask) as s:
            msg = s.get_final_message()
    else:
        msg = c.messages.create(**ask)
    assert msg.stop_reason == "tool_use", msg
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris", "days": 3}
    follow = c.messages.create(
        model="an-over-resp", max_tokens=256, tools=[tool],
        messages=[ask["messages"][0], {"role": "assistant", "content": msg.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}],
    )
    assert follow.content[0].text == "Hello from fallback"
    c.close()
