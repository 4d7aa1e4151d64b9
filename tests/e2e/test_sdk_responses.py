"""The official openai SDK's Responses API (`client.responses`) through the gateway while the
primary fails: same-dialect chains of `openai_responses` backends (routes in
conftest.GATEWAY_CONFIG: `codex-main`)."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_responses_fail_over_to_the_fallback(gateway, primary, fallback, stream):
    set_plan(primary, [], then=OVERLOADED)
    c = client(gateway)
    if stream:
        with c.responses.stream(model="codex-main", input="Say hello") as s:
            final = s.get_final_response()
            served_by = s.response.headers["x-switchyard-backend"] if hasattr(s, "response") else None
        text = final.output_text
    else:
        raw = c.responses.with_raw_response.create(model="codex-main", input="Say hello")
        served_by = raw.headers["x-switchyard-backend"]
        text = raw.parse().output_text
    assert text == "Hello from fallback"
    if served_by is not None:
        assert served_by == "r-fallback"
    assert stats(primary)["requests"] >= 1
    c.close()


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_a_function_call_round_trip_over_a_failover(gateway, primary, fallback, stream):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [TOOL_CALL], then={"kind": "ok"})
    c = client(gateway)
    first = dict(model="codex-main", input="What is the weather in Paris?", tools=[WEATHER_TOOL], store=False)
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
        model="codex-main",
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
