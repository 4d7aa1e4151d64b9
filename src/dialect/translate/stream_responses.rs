//! Stream translation from a Responses API backend to a chat completions client, event by
//! event (see [`super::StreamTranslator`]).
//!
//! `response.created` opens the client's stream with the role chunk (as `message_start`
//! does for an Anthropic backend); text, refusal and reasoning deltas become chunks as they
//! arrive; a `function_call` output item opens a tool call (its `tool_calls[i].index` counts
//! function calls in output order) and its argument deltas follow it; `response.completed`
//! or `response.incomplete` closes the stream: the finish chunk, the usage chunk when the
//! client asked for `stream_options.include_usage`, then `data: [DONE]`. Failure events
//! (`response.failed`, `error`) are the gateway's business (it classifies each event before
//! translating it): nothing is emitted for them here.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chat_responses::{chat_usage, finish_reason};
use super::common::{
    chunk_prefix, event_json, fallback_tool_id, openai_id, unix_now, write_chunk, write_json,
    ContentDelta, EmptyDelta, FunctionDelta, ReasoningDelta, RefusalDelta, RoleDelta,
    ToolCallDelta, ToolCallsDelta, UsageChunk,
};
use crate::sse::SseEvent;

#[derive(Deserialize)]
struct REvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(borrow, default)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item: Option<RItem<'a>>,
    #[serde(default)]
    response: Option<Value>,
}

#[derive(Deserialize)]
struct RItem<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// A function call seen in the stream.
struct Call {
    output_index: Option<u64>,
    item_id: String,
    /// The chat `tool_calls[i].index`.
    index: u32,
    args_sent: bool,
}

pub(super) struct ResponsesToOpenAi {
    model: String,
    include_usage: bool,
    pub(super) created: u64,
    id: String,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[{"index":0,"delta":`
    prefix: Vec<u8>,
    started: bool,
    calls: Vec<Call>,
    finish: Option<&'static str>,
    usage: Option<Value>,
    done: bool,
}

impl ResponsesToOpenAi {
    pub(super) fn new(model: &str, include_usage: bool) -> Self {
        ResponsesToOpenAi {
            model: model.to_owned(),
            include_usage,
            created: unix_now(),
            id: String::new(),
            prefix: Vec::new(),
            started: false,
            calls: Vec::new(),
            finish: None,
            usage: None,
            done: false,
        }
    }

    /// Sends the role chunk the first time anything is to be sent.
    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = openai_id(upstream_id);
        self.prefix = chunk_prefix(&self.id, self.created, &self.model);
        self.chunk(
            out,
            &RoleDelta {
                role: "assistant",
                content: "",
            },
            None,
        );
    }

    fn chunk<D: Serialize>(&self, out: &mut Vec<u8>, delta: &D, finish: Option<&str>) {
        write_chunk(&self.prefix, out, delta, finish);
    }

    fn call_position(&self, output_index: Option<u64>, item_id: Option<&str>) -> Option<usize> {
        let item_id = item_id.filter(|s| !s.is_empty());
        self.calls
            .iter()
            .position(|c| match (output_index, item_id) {
                (Some(o), _) if c.output_index == Some(o) => true,
                (_, Some(id)) => c.item_id == id,
                _ => false,
            })
    }

    /// Opens a tool call for a `function_call` item (once), returning its position.
    fn open_call(
        &mut self,
        output_index: Option<u64>,
        item: &RItem<'_>,
        out: &mut Vec<u8>,
    ) -> usize {
        if let Some(p) = self.call_position(output_index, item.id.as_deref()) {
            return p;
        }
        let index = self.calls.len() as u32;
        let call_id = match item.call_id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Owned(fallback_tool_id(&self.id, index as usize)),
        };
        self.chunk(
            out,
            &ToolCallsDelta {
                tool_calls: [ToolCallDelta {
                    index,
                    id: Some(&call_id),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(item.name.as_deref().unwrap_or("")),
                        arguments: "",
                    },
                }],
            },
            None,
        );
        self.calls.push(Call {
            output_index,
            item_id: item.id.as_deref().unwrap_or("").to_owned(),
            index,
            args_sent: false,
        });
        self.calls.len() - 1
    }

    fn call_args(&mut self, position: usize, args: &str, out: &mut Vec<u8>) {
        if args.is_empty() {
            return;
        }
        let call = &mut self.calls[position];
        call.args_sent = true;
        let index = call.index;
        self.chunk(
            out,
            &ToolCallsDelta {
                tool_calls: [ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: args,
                    },
                }],
            },
            None,
        );
    }

    pub(super) fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Some(data) = &ev.data else { return };
        let Some(e) = event_json::<REvent>(data) else {
            return;
        };
        let name = ev.event.as_deref().or(e.kind.as_deref()).unwrap_or("");
        let delta = e.delta.as_deref().filter(|d| !d.is_empty());
        match name {
            "response.created" | "response.in_progress" => {
                let id = e
                    .response
                    .as_ref()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str);
                self.start(id, out);
            }
            "response.output_item.added" | "response.output_item.done" => {
                let Some(item) = e.item.as_ref() else { return };
                if item.kind.as_deref() != Some("function_call") {
                    return;
                }
                self.start(None, out);
                let p = self.open_call(e.output_index, item, out);
                // A server that sends the arguments whole (at `added` or `done`) rather than
                // as deltas: they go out once.
                if !self.calls[p].args_sent {
                    if let Some(args) = item.arguments.as_deref() {
                        self.call_args(p, args, out);
                    }
                }
            }
            "response.output_text.delta" => {
                if let Some(t) = delta {
                    self.start(None, out);
                    self.chunk(out, &ContentDelta { content: t }, None);
                }
            }
            "response.refusal.delta" => {
                if let Some(t) = delta {
                    self.start(None, out);
                    self.chunk(out, &RefusalDelta { refusal: t }, None);
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(t) = delta {
                    self.start(None, out);
                    self.chunk(
                        out,
                        &ReasoningDelta {
                            reasoning_content: t,
                        },
                        None,
                    );
                }
            }
            "response.function_call_arguments.delta" => {
                let Some(args) = delta else { return };
                match self.call_position(e.output_index, e.item_id.as_deref()) {
                    Some(p) => self.call_args(p, args, out),
                    None => tracing::debug!(
                        "translation: skipped arguments for a function call never announced"
                    ),
                }
            }
            "response.completed" | "response.incomplete" => {
                let r = e.response.as_ref();
                self.usage = r.and_then(|r| r.get("usage")).cloned();
                let status = r.and_then(|r| r.get("status")).and_then(Value::as_str);
                let status = status.or(Some(if name == "response.incomplete" {
                    "incomplete"
                } else {
                    "completed"
                }));
                let reason = r
                    .and_then(|r| r.pointer("/incomplete_details/reason"))
                    .and_then(Value::as_str);
                self.finish = Some(finish_reason(status, reason, !self.calls.is_empty()));
                self.close(out);
            }
            // response.failed and error (the gateway handles those), envelopes (`.done`,
            // `content_part.*`, `reasoning_summary_part.*`) and anything new.
            _ => {}
        }
    }

    pub(super) fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(None, out);
        let finish = self.finish.unwrap_or(if self.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        });
        self.chunk(out, &EmptyDelta {}, Some(finish));
        if self.include_usage {
            out.extend_from_slice(b"data: ");
            write_json(
                out,
                &UsageChunk {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    choices: [],
                    usage: chat_usage(self.usage.as_ref()),
                },
            );
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.done = true;
    }
}
