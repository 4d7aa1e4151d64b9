"""Mixed-dialect chains as the official SDKs see them: the SDKs must parse every translated
response and stream event, and tool-call arguments must arrive intact.

Routes (conftest.GATEWAY_CONFIG):
  oa-over-claude: primary (Anthropic dialect) -> oa-fallback (OpenAI dialect)
  an-over-gpt:    oa-primary (OpenAI dialect) -> fallback (Anthropic dialect)
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import json_body, requests, set_plan, stats

TOOL_CALL = {"kind": "ok", "tool_call": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}
OVERLOADED = {"kind": "status", "status": 529}
OA_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                            "required": ["city"]}}}]
AN_TOOLS = [{"name": "get_weather", "description": "Weather by city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                              "required": ["city"]}}]
PROMPT = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
MODES = pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])


def oa_client(gateway):
    return openai.OpenAI(base_url=gateway + "/v1", api_key="client-key", max_retries=0, timeout=20)


def an_client(gateway):
    return anthropic.Anthropic(base_url=gateway, api_key="client-key", max_retries=0, timeout=20)


def openai_tool_call(client, route, stream):
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=route, messages=PROMPT, tools=OA_TOOLS)
        c = raw.parse()
        call = c.choices[0].message.tool_calls[0]
        return call.function.name, json.loads(call.function.arguments), c.choices[0].finish_reason, raw.headers
    with client.chat.completions.with_streaming_response.create(
        model=route, messages=PROMPT, tools=OA_TOOLS, stream=True, stream_options={"include_usage": True}
    ) as raw:
        chunks = list(raw.parse())
        headers = raw.headers
    name = "".join(tc.function.name or "" for ch in chunks for c in ch.choices for tc in (c.delta.tool_calls or []) if tc.function)
    args = "".join(tc.function.arguments or "" for ch in chunks for c in ch.choices for tc in (c.delta.tool_calls or []) if tc.function)
    finish = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    assert chunks[-1].usage is not None, "include_usage must yield a usage chunk"
    return name, json.loads(args), finish[-1], headers


def anthropic_tool_call(client, route, stream):
    if not stream:
        raw = client.messages.with_raw_response.create(model=route, max_tokens=256, messages=PROMPT, tools=AN_TOOLS)
        m = raw.parse()
        block = next(b for b in m.content if b.type == "tool_use")
        return block.name, block.input, m.stop_reason, raw.headers
    with client.messages.stream(model=route, max_tokens=256, messages=PROMPT, tools=AN_TOOLS) as s:
        headers = s.response.headers
        events = list(s)
        m = s.get_final_message()
    assert events[0].type == "message_start" and events[-1].type == "message_stop", [e.type for e in events]
    block = next(b for b in m.content if b.type == "tool_use")
    return block.name, block.input, m.stop_reason, headers


@MODES
def test_openai_client_anthropic_primary_fails_openai_fallback_answers_with_a_tool_call(gateway, primary, fallback, stream):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [], then=TOOL_CALL)
    name, args, finish, headers = openai_tool_call(oa_client(gateway), "oa-over-claude", stream)
    assert (name, args, finish) == ("get_weather", {"city": "Paris", "days": 3}, "tool_calls")
    assert headers["x-switchyard-backend"] == "oa-fallback"
    # The failed primary got a valid Anthropic request (the mock validates like the real API).
    sent = json_body(requests(primary)[0])
    assert sent["model"] == "claude-opus-4-7" and sent["tools"][0]["input_schema"]["required"] == ["city"]


@MODES
def test_anthropic_client_openai_primary_fails_anthropic_fallback_answers_with_a_tool_call(gateway, primary, fallback, stream):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [], then=TOOL_CALL)
    name, args, stop, headers = anthropic_tool_call(an_client(gateway), "an-over-gpt", stream)
    assert (name, args, stop) == ("get_weather", {"city": "Paris", "days": 3}, "tool_use")
    assert headers["x-switchyard-backend"] == "fallback"
    sent = json_body(requests(primary)[0])
    assert sent["model"] == "gpt-4o" and sent["tools"][0]["function"]["parameters"]["required"] == ["city"]


@MODES
def test_openai_client_is_answered_by_a_translated_anthropic_backend(gateway, primary, fallback, stream):
    set_plan(primary, [], then=TOOL_CALL)
    name, args, finish, headers = openai_tool_call(oa_client(gateway), "oa-over-claude", stream)
    assert (name, args, finish) == ("get_weather", {"city": "Paris", "days": 3}, "tool_calls")
    assert headers["x-switchyard-backend"] == "primary"
    assert stats(fallback)["requests"] == 0


@MODES
def test_anthropic_client_is_answered_by_a_translated_openai_backend(gateway, primary, fallback, stream):
    set_plan(primary, [], then=TOOL_CALL)
    name, args, stop, headers = anthropic_tool_call(an_client(gateway), "an-over-gpt", stream)
    assert (name, args, stop) == ("get_weather", {"city": "Paris", "days": 3}, "tool_use")
    assert headers["x-switchyard-backend"] == "oa-primary"


@MODES
def test_translated_text_and_thinking_parse_in_the_sdks(gateway, primary, fallback, stream):
    set_plan(primary, [], then={"kind": "ok", "thinking": "Let me think.", "text": "Bonjour"})
    client = an_client(gateway)
    if stream:
        with client.messages.stream(model="an-over-gpt", max_tokens=64, messages=PROMPT) as s:
            list(s)
            m = s.get_final_message()
    else:
        m = client.messages.create(model="an-over-gpt", max_tokens=64, messages=PROMPT)
    texts = [b.text for b in m.content if b.type == "text"]
    thinking = [b.thinking for b in m.content if b.type == "thinking"]
    assert texts == ["Bonjour"]
    assert thinking == ["Let me think."], m.content
