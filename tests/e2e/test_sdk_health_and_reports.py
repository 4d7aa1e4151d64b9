"""Health memory and failure reports as the official SDKs see them.

Routes and backends: see conftest.GATEWAY_CONFIG (each test gets a fresh gateway).
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from conftest import http, set_plan, stats

PROMPT = [{"role": "user", "content": "Say hello"}]
OVERLOADED = {"kind": "status", "status": 529}


def test_a_turns_title_call_skips_the_primary_that_failed_its_main_call(gateway, primary, fallback):
    """The main call of a turn fails over; the title call of the same turn must not retry the
    primary, even though its next attempt would otherwise be allowed."""
    turn = {"x-switchyard-session": "chat-42", "x-switchyard-turn": "3"}
    client = anthropic.Anthropic(base_url=gateway, api_key="client-key", max_retries=0, timeout=20, default_headers=turn)
    # retries: 1 in the e2e config: two failed attempts, then the engine gives up on the
    # primary (it is ejected at once).
    set_plan(primary, [{"kind": "status", "status": 500}, {"kind": "status", "status": 500}], then={"kind": "ok"})
    main = client.messages.with_raw_response.create(model="claude-main", max_tokens=64, messages=PROMPT)
    assert main.headers["x-switchyard-backend"] == "fallback"
    primary_seen = stats(primary)["requests"]
    assert primary_seen == 2
    # The cooldown ends (an operator reset stands in for the clock): only the turn remembers.
    status, _ = http("POST", f"{gateway}/admin/backends/primary/reset")
    assert status == 200

    with client.messages.stream(model="claude-main", max_tokens=16, messages=[{"role": "user", "content": "Title for this chat"}]) as s:
        title = s.get_final_message()
        served_by = s.response.headers["x-switchyard-backend"]
    assert served_by == "fallback"
    assert "".join(b.text for b in title.content if b.type == "text") == "Hello from fallback"
    assert stats(primary)["requests"] == primary_seen, "the title call touched the primary that failed this turn"

    # A new turn is free to use the (healthy again) primary.
    other = anthropic.Anthropic(base_url=gateway, api_key="client-key", max_retries=0, timeout=20,
                                default_headers={"x-switchyard-session": "chat-42", "x-switchyard-turn": "4"})
    r = other.messages.with_raw_response.create(model="claude-main", max_tokens=64, messages=PROMPT)
    assert r.headers["x-switchyard-backend"] == "primary"
    client.close()
    other.close()


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_openai_sdk_sees_the_summary_and_every_backends_failure(gateway, primary, fallback, stream):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [], then={"kind": "status", "status": 401})
    client = openai.OpenAI(base_url=gateway + "/v1", api_key="client-key", max_retries=0, timeout=20)
    with pytest.raises(openai.APIStatusError) as ei:
        if stream:
            for _ in client.chat.completions.create(model="gpt-main", messages=PROMPT, stream=True):
                pass
        else:
            client.chat.completions.create(model="gpt-main", messages=PROMPT)
    e = ei.value
    assert e.status_code == 502
    summary = "All 2 backends failed: oa-primary (gpt-4o) overloaded 529 after 2 attempts; oa-fallback (gpt-4o-mini) auth 401"
    assert summary in str(e), str(e)
    failures = e.body["failures"]
    assert [f["backend"] for f in failures] == ["oa-primary", "oa-fallback"]
    assert [f["reason"] for f in failures] == ["overloaded", "auth"]
    assert failures[0]["attempts"] == 2 and failures[0]["retryable"] is True
    client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_anthropic_sdk_sees_the_summary_and_every_backends_failure(gateway, primary, fallback, stream):
    set_plan(primary, [], then=OVERLOADED)
    set_plan(fallback, [], then={"kind": "status", "status": 401})
    client = anthropic.Anthropic(base_url=gateway, api_key="client-key", max_retries=0, timeout=20)
    with pytest.raises(anthropic.APIStatusError) as ei:
        if stream:
            with client.messages.stream(model="claude-main", max_tokens=64, messages=PROMPT) as s:
                s.get_final_message()
        else:
            client.messages.create(model="claude-main", max_tokens=64, messages=PROMPT)
    e = ei.value
    assert e.status_code == 502
    assert "All 2 backends failed: primary (claude-opus-4-7) overloaded 529 after 2 attempts; fallback (claude-sonnet-4-5) auth 401" in str(e)
    # The Anthropic SDK keeps the whole JSON body; failures sit beside `error`.
    failures = e.body["failures"]
    assert [(f["backend"], f["reason"], f["status"]) for f in failures] == [("primary", "overloaded", 529), ("fallback", "auth", 401)]
    client.close()
