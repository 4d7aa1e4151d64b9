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

use super::common::{event_json, finish_reason, json as to_json, unix_now, Tokens};
use super::responses_anthropic::{annotation_of, char_len, sources_of, web_search_item};
use super::responses_chat::{
    custom_input, custom_tool_call_item, function_call_item, id_suffix, message_item,
    reasoning_item, response_object, status_of, usage_of,
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
    /// A call of one of the client's freeform tools: its `{"input": …}` arguments are held
    /// and go out as the tool's input when the call closes.
    CustomCall,
    WebSearch,
}

impl Kind {
    fn is_call(self) -> bool {
        matches!(self, Kind::Call | Kind::CustomCall)
    }
}

struct Item {
    kind: Kind,
    id: String,
    /// Text, summary text, arguments or the search query so far.
    text: String,
    /// Function calls: the chat tool-call index, call id and name.
    chat_index: u32,
    call_id: String,
    name: String,
    /// Messages: `url_citation` annotations; web searches: the sources found.
    extra: Vec<Value>,
    /// A web search that failed.
    failed: bool,
    done: bool,
}

impl Item {
    fn value(&self, status: &str) -> Value {
        match self.kind {
            Kind::Reasoning => reasoning_item(&self.id, &self.text),
            Kind::Message => {
                let mut item = message_item(&self.id, status, Some(&self.text));
                if !self.extra.is_empty() {
                    item["content"][0]["annotations"] = Value::Array(self.extra.clone());
                }
                item
            }
            Kind::Call => {
                function_call_item(&self.id, status, &self.call_id, &self.name, &self.text)
            }
            Kind::CustomCall => custom_tool_call_item(
                &self.id,
                status,
                &self.call_id,
                &self.name,
                &custom_input(&self.text),
            ),
            Kind::WebSearch => {
                let status = if self.failed { "failed" } else { status };
                web_search_item(&self.id, status, &self.text, &self.extra)
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
    /// The client's freeform tools: their calls become `custom_tool_call` items.
    pub(super) custom: Vec<String>,
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
            custom: Vec::new(),
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
            Kind::CustomCall => "ctc",
            Kind::WebSearch => "ws",
        };
        self.items.push(Item {
            kind,
            id: format!("{prefix}_{}_{index}", self.suffix),
            text: String::new(),
            chat_index: 0,
            call_id: String::new(),
            name: String::new(),
            extra: Vec::new(),
            failed: false,
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
                let annotations = Value::Array(item.extra.clone());
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
                           "part": {"type": "output_text", "annotations": annotations, "logprobs": [], "text": text}}),
                );
            }
            Kind::WebSearch => {
                for kind in [
                    "response.web_search_call.searching",
                    "response.web_search_call.completed",
                ] {
                    self.emit(out, kind, json!({"item_id": id, "output_index": index}));
                }
            }
            Kind::Call => {
                let name = self.items[index].name.clone();
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": text}),
                );
            }
            Kind::CustomCall => {
                let input = custom_input(&text);
                if !input.is_empty() {
                    self.emit(
                        out,
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": id, "output_index": index, "delta": input}),
                    );
                }
                self.emit(
                    out,
                    "response.custom_tool_call_input.done",
                    json!({"item_id": id, "output_index": index, "input": input}),
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
            .find(|i| i.kind.is_call())
            .map(|i| (i.chat_index, i.call_id.as_str()));
        let given = call
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| i.min(u64::from(u32::MAX)) as u32);
        let calls = self.items.iter().filter(|i| i.kind.is_call()).count() as u32;
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
            .position(|i| i.kind.is_call() && i.chat_index == chat_index && !i.done);
        let index = match found {
            Some(i) => {
                if self.items[i].name.is_empty() && !name.is_empty() {
                    self.items[i].name = name.to_owned();
                }
                i
            }
            None => {
                let index = self.open_call(upstream_id, name, out);
                self.items[index].chat_index = chat_index;
                index
            }
        };
        let args = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty());
        if let Some(args) = args {
            self.call_args(index, args, out);
        }
    }

    /// Opens a function call item (closing the open text), returning its output index.
    fn open_call(&mut self, call_id: Option<&str>, name: &str, out: &mut Vec<u8>) -> usize {
        if let Some(c) = self.current {
            self.close(c, out);
        }
        let kind = if self.custom.iter().any(|c| c == name) {
            Kind::CustomCall
        } else {
            Kind::Call
        };
        let index = self.open(kind);
        let call_id = match call_id {
            Some(id) => id.to_owned(),
            None => format!("call_{}_{index}", self.suffix),
        };
        let item = &mut self.items[index];
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

    fn call_args(&mut self, index: usize, args: &str, out: &mut Vec<u8>) {
        self.items[index].text.push_str(args);
        if self.items[index].kind == Kind::CustomCall {
            // Held: the input goes out whole when the call closes.
            return;
        }
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

    /// Opens a web search item (closing the open text), returning its output index.
    fn open_web_search(&mut self, out: &mut Vec<u8>) -> usize {
        if let Some(c) = self.current {
            self.close(c, out);
        }
        let index = self.open(Kind::WebSearch);
        let id = self.items[index].id.clone();
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index,
                   "item": {"type": "web_search_call", "id": id, "status": "in_progress"}}),
        );
        self.emit(
            out,
            "response.web_search_call.in_progress",
            json!({"item_id": id, "output_index": index}),
        );
        index
    }

    /// Adds an annotation to the message item at `index`.
    fn annotate(&mut self, index: usize, annotation: Value, out: &mut Vec<u8>) {
        let annotation_index = self.items[index].extra.len();
        let id = self.items[index].id.clone();
        self.emit(
            out,
            "response.output_text.annotation.added",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                   "annotation_index": annotation_index, "annotation": annotation}),
        );
        self.items[index].extra.push(annotation);
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
        let Some(chunk @ Value::Object(_)) = event_json::<Value>(data) else {
            return;
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

/// What an Anthropic content block became in the Responses output.
enum Block {
    /// Text joins the open message item; `start` is where this block's text began in it
    /// (characters), known at its first delta; citations wait for the block's end, when the
    /// span they cover is known.
    Text {
        start: Option<usize>,
        citations: Vec<Value>,
    },
    Thinking,
    Call(usize),
    /// A web search: its item, the `server_tool_use` id its result names, the query JSON.
    Search {
        item: usize,
        tool_use_id: String,
        input: String,
    },
    Other,
}

/// Stream: Anthropic messages events (backend) → Responses events (client), through the same
/// writer as chat chunks. Text and thinking deltas become text and reasoning summary deltas,
/// `tool_use` blocks function calls, `server_tool_use` web searches `web_search_call` items
/// (the query from the block's input, the sources from its `web_search_tool_result`) and
/// web search citations `url_citation` annotations; `message_delta`'s stop reason and usage
/// decide `response.completed` or `response.incomplete`.
pub(super) struct AnthropicToResponses {
    pub(super) w: ChatToResponses,
    blocks: Vec<(usize, Block)>,
    tokens: Tokens,
}

#[derive(serde::Deserialize)]
struct AEvent {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    delta: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
}

impl AnthropicToResponses {
    pub(super) fn new(model: &str) -> Self {
        AnthropicToResponses {
            w: ChatToResponses::new(model),
            blocks: Vec::new(),
            tokens: Tokens::default(),
        }
    }

    fn block(&mut self, index: Option<usize>) -> Option<&mut Block> {
        let index = index?;
        self.blocks
            .iter_mut()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    pub(super) fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.w.done {
            return;
        }
        let Some(data) = &ev.data else { return };
        let Some(e) = event_json::<AEvent>(data) else {
            return;
        };
        let name = ev.event.as_deref().unwrap_or(&e.kind);
        match name {
            "message_start" => {
                let m = e.message.as_ref();
                let id = m.and_then(|m| m.get("id")).and_then(Value::as_str);
                if let Some(u) = m.and_then(|m| m.get("usage")) {
                    self.tokens.update_from_anthropic(u);
                }
                self.w
                    .start(id.map(|id| id.strip_prefix("msg_").unwrap_or(id)), out);
            }
            "content_block_start" => {
                self.w.start(None, out);
                let Some(index) = e.index else { return };
                let b = e.content_block.unwrap_or(Value::Null);
                let s = |k: &str| b.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
                let block = match b.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" => Block::Text {
                        start: None,
                        citations: Vec::new(),
                    },
                    "thinking" => Block::Thinking,
                    "tool_use" => {
                        let name = s("name").unwrap_or("");
                        Block::Call(self.w.open_call(s("id"), name, out))
                    }
                    "server_tool_use" if s("name") == Some("web_search") => Block::Search {
                        item: self.w.open_web_search(out),
                        tool_use_id: s("id").unwrap_or("").to_owned(),
                        input: String::new(),
                    },
                    "web_search_tool_result" => {
                        let id = s("tool_use_id").unwrap_or("");
                        let item = self.blocks.iter().find_map(|(_, b)| match b {
                            Block::Search {
                                item, tool_use_id, ..
                            } if tool_use_id == id => Some(*item),
                            _ => None,
                        });
                        if let Some(item) = item {
                            match sources_of(&b) {
                                Some(sources) => self.w.items[item].extra = sources,
                                None => self.w.items[item].failed = true,
                            }
                            self.w.close(item, out);
                        }
                        Block::Other
                    }
                    _ => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let Some(d) = e.delta.as_ref() else { return };
                let s = |k: &str| d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
                let index = e.index;
                match d.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text_delta" => {
                        let Some(t) = s("text") else { return };
                        let at = self.w.text_like(Kind::Message, out);
                        let len = char_len(&self.w.items[at].text);
                        if let Some(Block::Text { start, .. }) = self.block(index) {
                            start.get_or_insert(len);
                        }
                        self.w.text(Kind::Message, t, out);
                    }
                    "thinking_delta" => {
                        if let Some(t) = s("thinking") {
                            self.w.text(Kind::Reasoning, t, out);
                        }
                    }
                    "input_json_delta" => {
                        let Some(j) = s("partial_json") else { return };
                        match self.block(index) {
                            Some(Block::Call(item)) => {
                                let item = *item;
                                self.w.call_args(item, j, out);
                            }
                            Some(Block::Search { input, .. }) => input.push_str(j),
                            _ => {}
                        }
                    }
                    "citations_delta" => {
                        if let (Some(c), Some(Block::Text { citations, .. })) =
                            (d.get("citation").cloned(), self.block(index))
                        {
                            citations.push(c);
                        }
                    }
                    // signature_delta: a thinking block's signature has no Responses form.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let Some(block) = self.block(e.index) else {
                    return;
                };
                if let Block::Search { item, input, .. } = block {
                    // The query is known now; the item stays open until its result block
                    // brings the sources.
                    let query = serde_json::from_str::<Value>(input)
                        .ok()
                        .and_then(|v| v.get("query").and_then(Value::as_str).map(String::from));
                    let item = *item;
                    self.w.items[item].text = query.unwrap_or_default();
                    return;
                }
                match std::mem::replace(block, Block::Other) {
                    Block::Text {
                        start: Some(start),
                        citations,
                    } if !citations.is_empty() => {
                        let Some(at) = self.w.current else { return };
                        let end = char_len(&self.w.items[at].text);
                        for c in citations {
                            if let Some(a) = annotation_of(&c, start, end) {
                                self.w.annotate(at, a, out);
                            }
                        }
                    }
                    Block::Call(item) => self.w.close(item, out),
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = &e.usage {
                    self.tokens.update_from_anthropic(u);
                }
                let stop = e
                    .delta
                    .as_ref()
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                if let Some(stop) = stop {
                    self.w.finish = Some(finish_reason(stop).to_owned());
                }
            }
            "message_stop" => self.end(out),
            // ping, error (the gateway's business) and anything new.
            _ => {}
        }
    }

    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        if self.w.done {
            return;
        }
        self.w.usage = Some(to_json(&self.tokens.openai()));
        self.w.end(out);
    }
}
