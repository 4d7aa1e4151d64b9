//! Stream: chat-completions chunks (backend) → Responses events (client), chunk by chunk.
//!
//! `response.created` and `response.in_progress` at the first chunk; each kind of content
//! opens its output item when its first delta arrives (`output_item.added`, then
//! `content_part.added` / `reasoning_summary_part.added`, then the delta), so the first thing
//! a client reads as content is the backend's first delta. A text or reasoning item closes
//! when the other kind or a tool call starts; tool calls stay open (chat streams may
//! interleave them by index) until the `finish_reason`, which closes every open item in output
//! order. `[DONE]` (or the stream's clean end) sends `response.completed`, or
//! `response.incomplete` for `length` / `content_filter`, with the whole Response and the
//! usage of the chunk that carried it. Every event has `event:` and a `sequence_number`
//! counting from 0. Held state is what the final Response needs: each item's text and
//! arguments.

use serde::Serialize;
use serde_json::{json, Value};

use super::common::unix_now;
use super::responses_chat::{
    function_call_item, id_suffix, message_item, reasoning_item, response_object, status_of,
    usage_of,
};
use crate::sse::SseEvent;

#[derive(Serialize)]
struct Event<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct SummaryDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct ArgsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Reasoning,
    Message,
    Call,
}

struct Item {
    kind: Kind,
    id: String,
    /// Text, summary text or arguments so far.
    text: String,
    /// Function calls: the chat tool-call index, call id and name.
    chat_index: u32,
    call_id: String,
    name: String,
    done: bool,
}

impl Item {
    fn value(&self, status: &str) -> Value {
        match self.kind {
            Kind::Reasoning => reasoning_item(&self.id, &self.text),
            Kind::Message => message_item(&self.id, status, Some(&self.text)),
            Kind::Call => {
                function_call_item(&self.id, status, &self.call_id, &self.name, &self.text)
            }
        }
    }
}

pub(super) struct ChatToResponses {
    model: String,
    pub(super) created: u64,
    /// Tests: `completed_at` is `created` (outputs compare byte for byte).
    pub(super) fixed_clock: bool,
    seq: u64,
    started: bool,
    suffix: String,
    items: Vec<Item>,
    /// The open reasoning or message item.
    current: Option<usize>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl ChatToResponses {
    pub(super) fn new(model: &str) -> Self {
        ChatToResponses {
            model: model.to_owned(),
            created: unix_now(),
            fixed_clock: false,
            seq: 0,
            started: false,
            suffix: String::new(),
            items: Vec::new(),
            current: None,
            finish: None,
            usage: None,
            done: false,
        }
    }

    fn emit<T: Serialize>(&mut self, out: &mut Vec<u8>, kind: &str, body: T) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        let ev = Event {
            kind,
            sequence_number: self.seq,
            body,
        };
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &ev);
        out.extend_from_slice(b"\n\n");
        self.seq += 1;
    }

    fn response(&self, status: &str, incomplete: Value, usage: Value) -> Value {
        let output = if status == "in_progress" {
            Vec::new()
        } else {
            self.items.iter().map(|i| i.value("completed")).collect()
        };
        let completed_at = match status {
            "in_progress" => None,
            _ if self.fixed_clock => Some(self.created),
            _ => Some(unix_now()),
        };
        response_object(
            &format!("resp_{}", self.suffix),
            self.created,
            completed_at,
            &self.model,
            (status, incomplete),
            Value::Array(output),
            usage,
        )
    }

    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.suffix = id_suffix(upstream_id);
        let r = self.response("in_progress", Value::Null, Value::Null);
        self.emit(out, "response.created", json!({ "response": r }));
        self.emit(out, "response.in_progress", json!({ "response": r }));
    }

    fn open(&mut self, kind: Kind) -> usize {
        let index = self.items.len();
        let prefix = match kind {
            Kind::Reasoning => "rs",
            Kind::Message => "msg",
            Kind::Call => "fc",
        };
        self.items.push(Item {
            kind,
            id: format!("{prefix}_{}_{index}", self.suffix),
            text: String::new(),
            chat_index: 0,
            call_id: String::new(),
            name: String::new(),
            done: false,
        });
        index
    }

    /// The open reasoning or message item of `kind`, opened (and the other closed) if needed.
    fn text_like(&mut self, kind: Kind, out: &mut Vec<u8>) -> usize {
        if let Some(i) = self.current {
            if self.items[i].kind == kind {
                return i;
            }
            self.close(i, out);
        }
        let index = self.open(kind);
        let id = self.items[index].id.clone();
        match kind {
            Kind::Reasoning => {
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index,
                           "item": {"type": "reasoning", "id": id, "summary": []}}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": ""}}),
                );
            }
            _ => {
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index,
                           "item": message_item(&id, "in_progress", None)}),
                );
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
                );
            }
        }
        self.current = Some(index);
        index
    }

    fn close(&mut self, index: usize, out: &mut Vec<u8>) {
        if self.items[index].done {
            return;
        }
        self.items[index].done = true;
        if self.current == Some(index) {
            self.current = None;
        }
        let item = &self.items[index];
        let (id, text) = (item.id.clone(), item.text.clone());
        let done_item = item.value("completed");
        match item.kind {
            Kind::Reasoning => {
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                );
            }
            Kind::Message => {
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": text}}),
                );
            }
            Kind::Call => {
                let name = self.items[index].name.clone();
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": text}),
                );
            }
        }
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done_item}),
        );
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        for i in 0..self.items.len() {
            self.close(i, out);
        }
    }

    fn text(&mut self, kind: Kind, delta: &str, out: &mut Vec<u8>) {
        let index = self.text_like(kind, out);
        self.items[index].text.push_str(delta);
        let id = std::mem::take(&mut self.items[index].id);
        if kind == Kind::Reasoning {
            self.emit(
                out,
                "response.reasoning_summary_text.delta",
                SummaryDelta {
                    item_id: &id,
                    output_index: index,
                    summary_index: 0,
                    delta,
                },
            );
        } else {
            self.emit(
                out,
                "response.output_text.delta",
                TextDelta {
                    item_id: &id,
                    output_index: index,
                    content_index: 0,
                    delta,
                    logprobs: [],
                },
            );
        }
        self.items[index].id = id;
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let upstream_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let last = self
            .items
            .iter()
            .rev()
            .find(|i| i.kind == Kind::Call)
            .map(|i| (i.chat_index, i.call_id.as_str()));
        let given = call
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| i.min(u64::from(u32::MAX)) as u32);
        let calls = self.items.iter().filter(|i| i.kind == Kind::Call).count() as u32;
        let chat_index = match (given, upstream_id, last) {
            (Some(i), _, _) => i,
            // No index (some servers): a new id starts a new call.
            (None, Some(id), Some((_, last_id))) if last_id != id => calls,
            (None, _, Some((i, _))) => i,
            (None, _, None) => 0,
        };
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let found = self
            .items
            .iter()
            .position(|i| i.kind == Kind::Call && i.chat_index == chat_index && !i.done);
        let index = match found {
            Some(i) => {
                if self.items[i].name.is_empty() && !name.is_empty() {
                    self.items[i].name = name.to_owned();
                }
                i
            }
            None => {
                if let Some(c) = self.current {
                    self.close(c, out);
                }
                let index = self.open(Kind::Call);
                let call_id = match upstream_id {
                    Some(id) => id.to_owned(),
                    None => format!("call_{}_{index}", self.suffix),
                };
                let item = &mut self.items[index];
                item.chat_index = chat_index;
                item.call_id = call_id;
                item.name = name.to_owned();
                let added = item.value("in_progress");
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                index
            }
        };
        let args = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty());
        if let Some(args) = args {
            self.items[index].text.push_str(args);
            let id = std::mem::take(&mut self.items[index].id);
            self.emit(
                out,
                "response.function_call_arguments.delta",
                ArgsDelta {
                    item_id: &id,
                    output_index: index,
                    delta: args,
                },
            );
            self.items[index].id = id;
        }
    }

    pub(super) fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Some(data) = &ev.data else { return };
        if data.trim_ascii() == b"[DONE]" {
            self.end(out);
            return;
        }
        let chunk: Value = match serde_json::from_slice(data) {
            Ok(c @ Value::Object(_)) => c,
            Ok(_) => return,
            Err(err) => {
                tracing::debug!(error = %err, "translation: skipped an unreadable stream chunk");
                return;
            }
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            // In-stream errors are the gateway's business, not translated here.
            return;
        }
        self.start(chunk.get("id").and_then(Value::as_str), out);
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
        if let Some(choice) = choice.filter(|_| self.finish.is_none()) {
            if let Some(d) = choice.get("delta") {
                let s = |k: &str| d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
                if let Some(r) = s("reasoning_content").or_else(|| s("reasoning")) {
                    self.text(Kind::Reasoning, r, out);
                }
                if let Some(t) = s("content") {
                    self.text(Kind::Message, t, out);
                }
                if let Some(t) = s("refusal") {
                    self.text(Kind::Message, t, out);
                }
                for call in d
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.tool_call(call, out);
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(f.to_owned());
                self.close_all(out);
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
    }

    /// `response.completed` (or `response.incomplete`) with the whole Response. Idempotent.
    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(None, out);
        self.close_all(out);
        let (status, incomplete) = status_of(self.finish.as_deref());
        let r = self.response(status, incomplete, usage_of(self.usage.as_ref()));
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({ "response": r }));
        self.done = true;
    }
}
