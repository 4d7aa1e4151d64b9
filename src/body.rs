//! The request body on the hot path: located, not deserialized.
//!
//! Same-dialect forwarding only needs two facts from the body (`model` and `stream`) and one
//! edit (`model` rewritten to the chain entry's model). [`scan`] walks the top-level object once,
//! validating JSON structure without building values, and records where those two keys sit;
//! [`with_model`] splices the new model in. Every other byte is forwarded as the client sent it,
//! unknown fields included.
//!
//! Validation is exactly RFC 8259, so nothing the gateway forwards can be read differently by
//! an upstream's parser: the number grammar, the escape grammar (`\u` takes four hex digits),
//! no raw control characters in strings, UTF-8 throughout. Like serde_json (and unlike some
//! lenient parsers), a `\u` escape of a lone UTF-16 surrogate is rejected: it decodes to no
//! character, and parsers disagree on what to make of it. Numbers are checked for grammar, not
//! range (`1e400` is valid JSON; serde_json alone rejects it as out of range).
//!
//! The tests compare the scanner with serde_json on generated and mutated documents; a longer
//! run is `PROPTEST_CASES=100000 cargo test --lib body::`.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

/// Why a body cannot be forwarded; each maps to a distinct client-facing message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is empty; send a JSON object")]
    Empty,
    #[error("request body is not valid JSON: {what} at byte {offset}")]
    InvalidJson { offset: usize, what: &'static str },
    #[error("request body must be a JSON object, not {found}")]
    NotAnObject { found: &'static str },
    #[error("`model` is missing; name one of the gateway's routes in `model`")]
    MissingModel,
    #[error("`model` must be a string, not {found}")]
    ModelNotString { found: &'static str },
    #[error("`{key}` appears more than once in the request body")]
    DuplicateKey { key: &'static str },
    #[error(
        "key `{key}` differs from `{canonical}` only in letter case; upstreams that match keys \
         case-insensitively would read it as `{canonical}`, so send exactly `{canonical}`"
    )]
    AmbiguousKey {
        key: String,
        canonical: &'static str,
    },
    #[error("`stream` must be a boolean")]
    StreamNotBool,
}

impl BodyError {
    /// The machine-readable code the client gets with the 400.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::Empty => "empty_body",
            BodyError::InvalidJson { .. } => "invalid_json",
            BodyError::NotAnObject { .. } => "body_not_object",
            BodyError::MissingModel => "missing_model",
            BodyError::ModelNotString { .. } => "invalid_model",
            BodyError::DuplicateKey { .. } => "duplicate_key",
            BodyError::AmbiguousKey { .. } => "ambiguous_key",
            BodyError::StreamNotBool => "invalid_stream",
        }
    }
}

/// The parts of a request body the gateway needs, found in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The client's `model` (the route name), unescaped.
    pub model: String,
    /// Byte range of the `model` value (including its quotes), for the rewrite.
    pub model_span: Range<usize>,
    pub stream: bool,
    /// Where the fields that say which conversation this is sit (sessions and turns).
    pub spans: FieldSpans,
}

/// Byte ranges of top-level values the session and turn derivation reads; located by the
/// scan the body gets anyway, so only what is needed is parsed later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSpans {
    pub user: Option<Range<usize>>,
    pub metadata: Option<Range<usize>>,
    pub prompt_cache_key: Option<Range<usize>>,
    pub safety_identifier: Option<Range<usize>>,
    /// Chat completions' and Anthropic's `messages`.
    pub messages: Option<Range<usize>>,
    /// The Responses API's `input`.
    pub input: Option<Range<usize>>,
    pub tools: Option<Range<usize>>,
    /// Anthropic's `system`, the Responses API's `instructions`.
    pub system: Option<Range<usize>>,
    pub instructions: Option<Range<usize>>,
    /// The Responses API's state kept by a provider: `previous_response_id`, `store`.
    pub previous_response_id: Option<Range<usize>>,
    pub store: Option<Range<usize>>,
}

const MAX_DEPTH: usize = 256;

/// Validates `body` as a JSON object and locates `model` and `stream` at its top level.
///
/// The whole body is validated before any key is judged, so invalid JSON is always reported
/// as [`BodyError::InvalidJson`], whatever else is wrong with it.
pub fn scan(body: &[u8]) -> Result<Scanned, BodyError> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    match s.peek() {
        None => return Err(BodyError::Empty),
        Some(b'{') => {}
        Some(c) => {
            // Report what it is when it is valid JSON of another type.
            let found = kind_name(c);
            return match s.value(0) {
                Ok(()) => {
                    s.ws();
                    if s.i == body.len() {
                        Err(BodyError::NotAnObject { found })
                    } else {
                        Err(s.err("unexpected data after the JSON value"))
                    }
                }
                Err(e) => Err(e),
            };
        }
    }
    s.i += 1;
    let mut model: Option<Range<usize>> = None;
    let mut stream: Option<Range<usize>> = None;
    let mut spans = FieldSpans::default();
    let mut key_error: Option<BodyError> = None;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let key = s.string_span()?;
            s.ws();
            s.expect(b':', "expected ':' after an object key")?;
            s.ws();
            let start = s.i;
            s.value(1)?;
            let span = start..s.i;
            match TopLevelKey::of(&body[key]) {
                TopLevelKey::Model => {
                    if model.replace(span).is_some() {
                        key_error.get_or_insert(BodyError::DuplicateKey { key: "model" });
                    }
                }
                TopLevelKey::Stream => {
                    if stream.replace(span).is_some() {
                        key_error.get_or_insert(BodyError::DuplicateKey { key: "stream" });
                    }
                }
                TopLevelKey::Field(field) => *field.slot(&mut spans) = Some(span),
                TopLevelKey::Ambiguous { key, canonical } => {
                    key_error.get_or_insert(BodyError::AmbiguousKey { key, canonical });
                }
                TopLevelKey::Other => {}
            }
            s.ws();
            match s.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(s.err_at(s.i.saturating_sub(1), "expected ',' or '}' in object")),
            }
        }
    }
    s.ws();
    if s.i != body.len() {
        return Err(s.err("unexpected data after the JSON object"));
    }
    if let Some(e) = key_error {
        return Err(e);
    }

    let model_span = model.ok_or(BodyError::MissingModel)?;
    let model_raw = &body[model_span.clone()];
    if model_raw[0] != b'"' {
        return Err(BodyError::ModelNotString {
            found: kind_name(model_raw[0]),
        });
    }
    // The scanner has validated the string, so decoding cannot fail; map it anyway.
    let invalid_model = BodyError::InvalidJson {
        offset: model_span.start,
        what: "invalid string in `model`",
    };
    let model = decode_string(model_raw).ok_or(invalid_model)?.into_owned();
    let stream = match stream.map(|r| &body[r]) {
        None | Some(b"false") | Some(b"null") => false,
        Some(b"true") => true,
        Some(_) => return Err(BodyError::StreamNotBool),
    };
    Ok(Scanned {
        model,
        model_span,
        stream,
        spans,
    })
}

/// A top-level field kept in [`FieldSpans`].
#[derive(Debug, Clone, Copy)]
enum Field {
    User,
    Metadata,
    PromptCacheKey,
    SafetyIdentifier,
    Messages,
    Input,
    Tools,
    System,
    Instructions,
    PreviousResponseId,
    Store,
}

impl Field {
    const ALL: [(&'static str, Field); 11] = [
        ("user", Field::User),
        ("metadata", Field::Metadata),
        ("prompt_cache_key", Field::PromptCacheKey),
        ("safety_identifier", Field::SafetyIdentifier),
        ("messages", Field::Messages),
        ("input", Field::Input),
        ("tools", Field::Tools),
        ("system", Field::System),
        ("instructions", Field::Instructions),
        ("previous_response_id", Field::PreviousResponseId),
        ("store", Field::Store),
    ];

    fn named(name: &[u8]) -> Option<Field> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|(_, f)| *f)
    }

    fn slot(self, spans: &mut FieldSpans) -> &mut Option<Range<usize>> {
        match self {
            Field::User => &mut spans.user,
            Field::Metadata => &mut spans.metadata,
            Field::PromptCacheKey => &mut spans.prompt_cache_key,
            Field::SafetyIdentifier => &mut spans.safety_identifier,
            Field::Messages => &mut spans.messages,
            Field::Input => &mut spans.input,
            Field::Tools => &mut spans.tools,
            Field::System => &mut spans.system,
            Field::Instructions => &mut spans.instructions,
            Field::PreviousResponseId => &mut spans.previous_response_id,
            Field::Store => &mut spans.store,
        }
    }
}

/// What a top-level key of a request body means to the gateway.
enum TopLevelKey {
    Model,
    Stream,
    Field(Field),
    /// A case variant of `model` or `stream` (`"Model"`, `"STREAM"`, `"ſtream"`).
    Ambiguous {
        key: String,
        canonical: &'static str,
    },
    Other,
}

impl TopLevelKey {
    /// The longest spelling of a name the gateway looks for: `previous_response_id` as
    /// twenty `\uXXXX`.
    const MAX_ESCAPED_LEN: usize = 2 + 6 * "previous_response_id".len();

    /// Classifies a validated JSON string (with its quotes).
    fn of(quoted: &[u8]) -> TopLevelKey {
        let raw = &quoted[1..quoted.len() - 1];
        match raw {
            b"model" => return TopLevelKey::Model,
            b"stream" => return TopLevelKey::Stream,
            _ => {
                if let Some(field) = Field::named(raw) {
                    return TopLevelKey::Field(field);
                }
            }
        }
        // Anything longer cannot spell a name of interest, however escaped.
        if quoted.len() > Self::MAX_ESCAPED_LEN {
            return TopLevelKey::Other;
        }
        if raw.is_ascii() && !raw.contains(&b'\\') {
            // The common case, no decoding: only an ASCII case variant can still matter.
            return Self::ambiguity(raw, || String::from_utf8_lossy(raw).into_owned());
        }
        let Some(key) = decode_string(quoted) else {
            return TopLevelKey::Other;
        };
        match &*key {
            "model" => TopLevelKey::Model,
            "stream" => TopLevelKey::Stream,
            name if Field::named(name.as_bytes()).is_some() => {
                TopLevelKey::Field(Field::named(name.as_bytes()).expect("just matched"))
            }
            _ if key.is_ascii() => Self::ambiguity(key.as_bytes(), || key.to_string()),
            // Go's encoding/json compares keys upper-cased with Unicode rules, where `ſ`
            // (U+017F) becomes `S`; no other non-ASCII character becomes a letter of `model`
            // or `stream`.
            _ => {
                let folded = key.replace('\u{17F}', "s");
                Self::ambiguity(folded.as_bytes(), || key.to_string())
            }
        }
    }

    fn ambiguity(spelling: &[u8], key: impl FnOnce() -> String) -> TopLevelKey {
        for canonical in ["model", "stream"] {
            if spelling.eq_ignore_ascii_case(canonical.as_bytes()) {
                return TopLevelKey::Ambiguous {
                    key: key(),
                    canonical,
                };
            }
        }
        TopLevelKey::Other
    }
}

/// The text of a JSON string (with its quotes) the scanner has validated; borrowed unless it
/// has escapes.
fn decode_string(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let inner = &quoted[1..quoted.len() - 1];
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(quoted)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

/// `body` with the bytes at `span` replaced by `model_json` (an encoded JSON string).
pub fn with_model(body: &[u8], span: &Range<usize>, model_json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() - span.len() + model_json.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(model_json);
    out.extend_from_slice(&body[span.end..]);
    Bytes::from(out)
}

/// Which of `keys` are present at the top level of a JSON object with a value other than
/// `null` (bit i for `keys[i]`), in one pass without a full parse; `None` when `body` is not a
/// JSON object. Used on upstream 2xx bodies, to catch an `{"error":…}` object some providers
/// send with status 200 (a Responses answer carries `"error": null`: that is no error).
pub fn top_level_keys(body: &[u8], keys: &[&str]) -> Option<u32> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    s.expect(b'{', "").ok()?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
        s.ws();
        return (s.i == body.len()).then_some(0);
    }
    let mut found = 0u32;
    loop {
        s.ws();
        let k = s.string_span().ok()?;
        let raw = &body[k.start + 1..k.end - 1];
        s.ws();
        s.expect(b':', "").ok()?;
        s.ws();
        let start = s.i;
        s.value(1).ok()?;
        if &body[start..s.i] != b"null" {
            for (i, key) in keys.iter().enumerate() {
                if raw == key.as_bytes() {
                    found |= 1 << i;
                }
            }
        }
        s.ws();
        match s.next() {
            Some(b',') => continue,
            Some(b'}') => break,
            _ => return None,
        }
    }
    s.ws();
    (s.i == body.len()).then_some(found)
}

/// Whether `body` is one well-formed JSON value (RFC 8259; strings are checked, not unescaped).
pub fn is_valid_json(body: &[u8]) -> bool {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    if s.value(0).is_err() {
        return false;
    }
    s.ws();
    s.i == body.len()
}

fn kind_name(first: u8) -> &'static str {
    match first {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// The text at the start of `s` up to the next `"` or `\` (all of `s` when there is none):
/// its length, and whether it is all ASCII from 0x20 up (nothing to check further).
#[inline]
fn text_run(s: &[u8]) -> (usize, bool) {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * 0x20;
    // Escape-dense text has short runs: look eight bytes at a time first, without a call. A
    // byte's high bit ends up set when it is `"`, `\`, below 0x20 or above 0x7F; borrows
    // between bytes can only mark bytes after the first such one, so the lowest mark is exact.
    let mut at = 0;
    while at < 64 {
        let Some(chunk) = s.get(at..at + 8) else {
            break;
        };
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        let marks = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | word.wrapping_sub(SPACES)
            | word)
            & HIGH;
        if marks != 0 {
            at += (marks.trailing_zeros() / 8) as usize;
            if let b'"' | b'\\' = s[at] {
                return (at, true);
            }
            break;
        }
        at += 8;
    }
    // Long runs: memchr's SIMD search for the end, then one branch-free (vectorized) pass
    // over the text. Every byte is looked at a bounded number of times, so the whole scan
    // stays linear.
    let end = at + memchr::memchr2(b'"', b'\\', &s[at..]).unwrap_or(s.len() - at);
    // Bytes that need no check are 0x20..=0x7F; shifted down by 0x20, all others land at 0x60
    // or above.
    let unusual = s[at..end].iter().fold(0u8, |found, &c| {
        found | u8::from(c.wrapping_sub(0x20) >= 0x60)
    });
    (end, unusual == 0)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn err(&self, what: &'static str) -> BodyError {
        self.err_at(self.i, what)
    }

    fn err_at(&self, offset: usize, what: &'static str) -> BodyError {
        if offset >= self.b.len() {
            BodyError::InvalidJson {
                offset: self.b.len(),
                what: "unexpected end of input",
            }
        } else {
            BodyError::InvalidJson { offset, what }
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), BodyError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// Skips a string starting at the current `"`, validating it; returns its span including
    /// the quotes.
    fn string_span(&mut self) -> Result<Range<usize>, BodyError> {
        let start = self.i;
        self.expect(b'"', "expected a string")?;
        loop {
            let (len, needs_no_check) = text_run(&self.b[self.i..]);
            if !needs_no_check {
                self.check_text(self.i..self.i + len)?;
            }
            self.i += len;
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(start..self.i);
                }
                Some(_) => self.escape()?,
                None => {
                    return Err(BodyError::InvalidJson {
                        offset: self.b.len(),
                        what: "unterminated string",
                    })
                }
            }
        }
    }

    /// Checks string text without escapes: no raw control characters, valid UTF-8.
    fn check_text(&self, text: Range<usize>) -> Result<(), BodyError> {
        let bytes = &self.b[text.clone()];
        // A branch-free pass (vectorized) first; finding the offset is for the error only.
        if bytes
            .iter()
            .copied()
            .min()
            .is_some_and(|lowest| lowest < 0x20)
        {
            let at = bytes.iter().position(|&c| c < 0x20).unwrap_or(0);
            return Err(self.err_at(text.start + at, "raw control character in a string"));
        }
        std::str::from_utf8(bytes)
            .map(|_| ())
            .map_err(|e| self.err_at(text.start + e.valid_up_to(), "invalid UTF-8 in a string"))
    }

    /// Skips the escape at the current `\`.
    fn escape(&mut self) -> Result<(), BodyError> {
        let at = self.i;
        match self.b.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = self
                    .hex4(at + 2)
                    .ok_or_else(|| self.err_at(at, "invalid \\u escape"))?;
                self.i = at + 6;
                match unit {
                    // A high surrogate only means something followed by an escaped low one.
                    0xD800..=0xDBFF => {
                        if self.b.get(self.i..self.i + 2) == Some(b"\\u") {
                            if let Some(0xDC00..=0xDFFF) = self.hex4(self.i + 2) {
                                self.i += 6;
                                return Ok(());
                            }
                        }
                        Err(self.err_at(at, "lone UTF-16 surrogate in a \\u escape"))
                    }
                    0xDC00..=0xDFFF => {
                        Err(self.err_at(at, "lone UTF-16 surrogate in a \\u escape"))
                    }
                    _ => Ok(()),
                }
            }
            None => Err(self.err_at(at + 1, "unterminated string")),
            Some(_) => Err(self.err_at(at, "invalid escape")),
        }
    }

    /// The four hex digits at `at` as a UTF-16 code unit.
    fn hex4(&self, at: usize) -> Option<u16> {
        let digits = self.b.get(at..at + 4)?;
        digits.iter().try_fold(0u16, |unit, &d| {
            Some(unit << 4 | (d as char).to_digit(16)? as u16)
        })
    }

    /// Skips a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<(), BodyError> {
        let start = self.i;
        let invalid = |s: &Self| s.err_at(start, "invalid number");
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(invalid(self)),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.digits() {
                return Err(invalid(self));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.digits() {
                return Err(invalid(self));
            }
        }
        Ok(())
    }

    /// Skips ASCII digits; whether there was at least one.
    fn digits(&mut self) -> bool {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i > start
    }

    fn value(&mut self, depth: usize) -> Result<(), BodyError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            None => Err(self.err("expected a value")),
            Some(b'"') => self.string_span().map(|_| ()),
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string_span()?;
                    self.ws();
                    self.expect(b':', "expected ':' after an object key")?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',') => {}
                        Some(b'}') => return Ok(()),
                        _ => return Err(self.err_at(self.i - 1, "expected ',' or '}' in object")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',') => {}
                        Some(b']') => return Ok(()),
                        _ => return Err(self.err_at(self.i - 1, "expected ',' or ']' in array")),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), BodyError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_model_and_stream_and_rewrites_only_the_model() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\": x"}],"model":"main","stream":true,"x_unknown":{"a":[1,2.5e3,null]}}"#;
        let s = scan(body).unwrap();
        assert_eq!(s.model, "main");
        assert!(s.stream);
        let out = with_model(body, &s.model_span, br#""gpt-4o""#);
        let expected =
            String::from_utf8_lossy(body).replace(r#""model":"main""#, r#""model":"gpt-4o""#);
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }

    #[test]
    fn escaped_model_and_keys_are_unescaped() {
        let s = scan(br#"{ "mod\u0065l" : "a\/b" }"#).unwrap();
        assert_eq!(s.model, "a/b");
        assert!(!s.stream);
    }

    #[test]
    fn rejects_each_kind_of_bad_body_distinctly() {
        assert_eq!(scan(b"  "), Err(BodyError::Empty));
        assert!(matches!(
            scan(b"{\"model\":"),
            Err(BodyError::InvalidJson { .. })
        ));
        assert!(matches!(
            scan(b"{\"model\":\"x\",}"),
            Err(BodyError::InvalidJson { .. })
        ));
        assert!(matches!(
            scan(b"{\"model\":\"x\"} x"),
            Err(BodyError::InvalidJson { .. })
        ));
        assert!(matches!(
            scan(b"{\"a\":tru}"),
            Err(BodyError::InvalidJson { .. })
        ));
        assert_eq!(
            scan(b"[1,2]"),
            Err(BodyError::NotAnObject { found: "an array" })
        );
        assert_eq!(
            scan(b"\"s\""),
            Err(BodyError::NotAnObject { found: "a string" })
        );
        assert_eq!(scan(b"{\"messages\":[]}"), Err(BodyError::MissingModel));
        assert_eq!(
            scan(b"{\"model\":42}"),
            Err(BodyError::ModelNotString { found: "a number" })
        );
        assert_eq!(
            scan(b"{\"model\":\"a\",\"model\":\"b\"}"),
            Err(BodyError::DuplicateKey { key: "model" })
        );
        assert_eq!(
            scan(b"{\"model\":\"a\",\"stream\":\"yes\"}"),
            Err(BodyError::StreamNotBool)
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut body = b"{\"model\":\"m\",\"x\":".to_vec();
        body.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(matches!(
            scan(&body),
            Err(BodyError::InvalidJson {
                what: "nesting too deep",
                ..
            })
        ));
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        let cases: &[&[u8]] = &[
            br#"{"model":"m","a":{"b":[true,false,null,-1,0.5,"\\\""]}}"#,
            br#"{"model":"m","a":[}"#,
            br#"{"model":"m","a":"unterminated}"#,
            br#"{"model":"m" "b":1}"#,
            br#"{"model":"m","b":-}"#,
        ];
        for c in cases {
            let ours = scan(c).is_ok();
            let theirs = serde_json::from_slice::<serde_json::Value>(c).is_ok();
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn detects_error_objects_in_2xx_bodies() {
        let keys = ["error", "choices"];
        assert_eq!(
            top_level_keys(br#"{"error":{"message":"x"}}"#, &keys),
            Some(0b01)
        );
        assert_eq!(
            top_level_keys(br#"{"choices":[{"error":1}]}"#, &keys),
            Some(0b10)
        );
        // A null value is no value: a Responses answer carries `"error": null`.
        assert_eq!(
            top_level_keys(br#"{"error":null,"choices":[]}"#, &keys),
            Some(0b10)
        );
        assert_eq!(
            top_level_keys(br#"{"id":"resp_1","error":null,"output":[]}"#, &keys),
            Some(0)
        );
        assert_eq!(top_level_keys(b"not json", &keys), None);
        assert!(is_valid_json(b" [1, {\"a\": 2}] "));
        assert!(!is_valid_json(b"{\"a\": }"));
    }

    /// `value` embedded where a client body would carry it, for the rows of the tables below.
    fn in_body(value: &[u8]) -> Vec<u8> {
        [&br#"{"model":"m","x":"#[..], value, b"}"].concat()
    }

    /// Rows `scan` and `is_valid_json` must both reject as invalid JSON (serde_json agrees);
    /// returns a description of every row that got through.
    fn accepted_rows(rows: &[&[u8]]) -> Vec<String> {
        let mut accepted = Vec::new();
        for &row in rows {
            assert!(
                serde_json::from_slice::<serde_json::Value>(row).is_err(),
                "bad row, serde_json accepts {:?}",
                String::from_utf8_lossy(row)
            );
            let body = in_body(row);
            if is_valid_json(row) || is_valid_json(&body) {
                accepted.push(format!(
                    "is_valid_json accepts {:?}",
                    row.escape_ascii().to_string()
                ));
            }
            if !matches!(scan(&body), Err(BodyError::InvalidJson { .. })) {
                accepted.push(format!(
                    "scan gives {:?} for {:?}",
                    scan(&body),
                    row.escape_ascii().to_string()
                ));
            }
        }
        accepted
    }

    #[test]
    fn rejects_numbers_outside_the_rfc_8259_grammar() {
        let rows: &[&[u8]] = &[
            b"01", b"-01", b"00", b"1-2", b"1.", b"-1.", b"1.e5", b"1e", b"1E", b"1e+", b"1e-",
            b"1.2.3", b"1e5e5", b"1e2.5", b"1+2", b"0-", b"-0-1", b"1E+-2",
            // Rejected before too, kept as guards: no sign-only, leading `+` or leading `.`.
            b"-", b"+1", b".5", b"-.5",
        ];
        assert_eq!(accepted_rows(rows), Vec::<String>::new());
    }

    #[test]
    fn rejects_escapes_outside_the_rfc_8259_grammar() {
        let rows: &[&[u8]] = &[
            br#""\x""#,
            br#""\a""#,
            br#""\0""#,
            br#""\'""#,
            br#""\U0041""#,
            br#""\u12""#,
            br#""\u12G4""#,
            br#""\u""#,
            br#""\u 123""#,
            br#""\u+123""#,
            br#""ab\u004""#,
        ];
        assert_eq!(accepted_rows(rows), Vec::<String>::new());
    }

    #[test]
    fn rejects_lone_utf16_surrogates_in_escapes() {
        let rows: &[&[u8]] = &[
            br#""\uD800""#,
            br#""\udbff""#,
            br#""\uDC00""#,
            br#""\uDFFF\uD800""#,
            br#""\uD800\u0041""#,
            br#""\uD800x""#,
            br#""\uD800\n""#,
            br#""\uDBFF\uDBFF""#,
            br#""\uD83D\uDE00\uDE00""#,
        ];
        assert_eq!(accepted_rows(rows), Vec::<String>::new());
    }

    #[test]
    fn rejects_raw_control_characters_in_strings() {
        let rows: Vec<Vec<u8>> = (0u8..0x20)
            .map(|c| [&b"\"a"[..], &[c], b"b\""].concat())
            .chain([b"{\"k\x01\":1}".to_vec(), b"[\"\t\"]".to_vec()])
            .collect();
        let rows: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        assert_eq!(accepted_rows(&rows), Vec::<String>::new());
    }

    #[test]
    fn rejects_invalid_utf8_in_strings_and_keys() {
        let rows: &[&[u8]] = &[
            b"\"\xff\"",                 // never a UTF-8 byte
            b"\"a\x80b\"",               // continuation byte without a lead
            b"\"\xc0\xaf\"",             // overlong `/`
            b"\"\xe2\x82\"",             // truncated sequence
            b"\"\xe2\x82x\"",            // truncated inside the string
            b"\"\xed\xa0\x80\"",         // a surrogate, encoded
            b"\"\xf4\x90\x80\x80\"",     // above U+10FFFF
            b"\"\xf8\x88\x80\x80\x80\"", // five-byte form
            b"\"caf\xc3\xa9\xc3\"",      // valid, then a lead byte cut off by the quote
            b"{\"\xc3\x28\":1}",         // in a key
        ];
        assert_eq!(accepted_rows(rows), Vec::<String>::new());
    }

    #[test]
    fn accepts_every_rfc_8259_edge_case() {
        let rows: &[&[u8]] = &[
            b"0",
            b"-0",
            b"0.0",
            b"-0.5e-3",
            b"1E+2",
            b"1e400",
            b"123456789012345678901234567890",
            br#""\u0000\u001f\"\\\/\b\f\n\r\t""#,
            br#""\uD83D\uDE00\ud83d\ude00""#,
            br#""\u00e9\uFFFF\uE000""#,
            "\"é😀\u{10FFFF}\"".as_bytes(),
            b"\"\x7f\"",
            b" \t\r\n[ 1 , { \"a\" : [ ] } ] \n",
        ];
        for &row in rows {
            let shown = row.escape_ascii().to_string();
            assert!(is_valid_json(row), "{shown}");
            assert!(scan(&in_body(row)).is_ok(), "{shown}");
        }
    }

    #[test]
    fn rejects_case_variants_of_model_and_stream() {
        let ambiguous = |key: &str, canonical| {
            Err(BodyError::AmbiguousKey {
                key: key.to_string(),
                canonical,
            })
        };
        let rows: &[(&[u8], Result<(), BodyError>)] = &[
            (br#"{"model":"m","Model":"x"}"#, ambiguous("Model", "model")),
            (br#"{"MODEL":"x","model":"m"}"#, ambiguous("MODEL", "model")),
            (
                br#"{"model":"m","STREAM":true}"#,
                ambiguous("STREAM", "stream"),
            ),
            (
                br#"{"model":"m","sTream":1}"#,
                ambiguous("sTream", "stream"),
            ),
            (
                br#"{"model":"m","\u004dodel":"x"}"#,
                ambiguous("Model", "model"),
            ),
            (
                br#"{"model":"m","\u0053\u0054REAM":1}"#,
                ambiguous("STREAM", "stream"),
            ),
            (
                "{\"model\":\"m\",\"\u{17F}tream\":true}".as_bytes(),
                ambiguous("\u{17F}tream", "stream"),
            ),
            (
                br#"{"model":"m","\u017ftream":true}"#,
                ambiguous("\u{17F}tream", "stream"),
            ),
            // Not case variants: a different word, or a character no upstream folds to ASCII.
            (br#"{"model":"m","models":1,"Stream_":1,"modeI":1}"#, Ok(())),
            ("{\"model\":\"m\",\"str\u{E9}am\":1}".as_bytes(), Ok(())),
            // Exact names spelled with escapes are the names themselves.
            (br#"{"\u006dodel":"m","str\u0065am":true}"#, Ok(())),
        ];
        for (body, expected) in rows {
            let got = scan(body).map(|_| ());
            assert_eq!(&got, expected, "{}", String::from_utf8_lossy(body));
            if let Err(e) = got {
                assert_eq!(e.code(), "ambiguous_key");
            }
        }
    }

    #[test]
    fn invalid_json_is_reported_before_key_problems() {
        for body in [
            &br#"{"model":"a","model":"b","x":01}"#[..],
            br#"{"Model":"a","model":"b","x":"\x"}"#,
            br#"{"model":"a","model":"b""#,
        ] {
            assert!(
                matches!(scan(body), Err(BodyError::InvalidJson { .. })),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn empty_object_with_trailing_data_is_not_an_object() {
        assert_eq!(top_level_keys(b" {} ", &["error"]), Some(0));
        assert_eq!(top_level_keys(b"{} x", &["error"]), None);
        assert_eq!(top_level_keys(b"{}{}", &["error"]), None);
    }

    #[test]
    fn text_run_matches_a_byte_loop() {
        let reference = |s: &[u8]| {
            let end = s
                .iter()
                .position(|&c| c == b'"' || c == b'\\')
                .unwrap_or(s.len());
            (end, s[..end].iter().all(|&c| (0x20..0x80).contains(&c)))
        };
        // Fillers next to the special values stress the borrows between lanes: 0x20 and `!`
        // sit just above the control range, `!` and `#` around `"`, `[` and `]` around `\`.
        // Lengths cover the word-at-a-time head, its tail and the memchr path after it.
        for filler in [0x20, b'!', b'#', b'[', b']', 0x7f, b'a'] {
            for len in [0, 1, 7, 8, 9, 16, 17, 31, 32, 33, 40, 47] {
                for at in 0..len {
                    for c in 0..=u8::MAX {
                        let mut s = vec![filler; len];
                        s[at] = c;
                        // What follows the first special byte must not change the answer.
                        if at + 1 < len {
                            s[at + 1] = if c == 0 { b'"' } else { c - 1 };
                        }
                        assert_eq!(text_run(&s), reference(&s), "{s:?}");
                    }
                }
            }
        }
    }

    /// The differential tests: the scanner against serde_json on generated JSON and on
    /// mutations of it.
    mod differential {
        use super::super::*;
        use proptest::prelude::*;
        use proptest::sample::Index;
        use serde_json::Value;

        /// A few thousand cases by default; `PROPTEST_CASES` runs more.
        fn config() -> ProptestConfig {
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000);
            ProptestConfig {
                cases,
                // Failures are reported in the output; nothing is written outside the module.
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        // Plain combinators, no regex strategies: they keep generation cheap in debug builds.
        fn ws() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["", "", "", "", " ", "\n", " \t", "\r\n"])
                .prop_map(String::from)
        }

        /// Numbers of every shape the grammar allows. Exponents stay small: serde_json rejects
        /// numbers beyond f64 range, RFC 8259 does not.
        fn number() -> impl Strategy<Value = String> {
            let int = prop_oneof![0u64..10, any::<u64>()];
            let frac = prop::option::of((any::<u32>(), 1usize..6));
            let exp = prop::option::of((
                prop::sample::select(vec!["e", "E", "e+", "E-", "e-"]),
                0u8..100,
            ));
            (any::<bool>(), int, frac, exp).prop_map(|(negative, int, frac, exp)| {
                let sign = if negative { "-" } else { "" };
                let frac = frac.map_or(String::new(), |(f, width)| format!(".{f:0width$}"));
                let exp = exp.map_or(String::new(), |(e, digits)| format!("{e}{digits}"));
                format!("{sign}{int}{frac}{exp}")
            })
        }

        /// One piece of a string's contents: raw text (any Unicode) or an escape of any form.
        fn string_piece() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec!["a", "hi there", "model", "0", "_x_", "Zürich"])
                    .prop_map(String::from),
                any::<char>()
                    .prop_filter("raw-safe", |&c| c >= ' ' && c != '"' && c != '\\')
                    .prop_map(String::from),
                prop::sample::select(vec![
                    r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t"
                ])
                .prop_map(String::from),
                (any::<char>(), any::<bool>()).prop_map(|(c, upper)| {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| {
                            if upper {
                                format!("\\u{u:04X}")
                            } else {
                                format!("\\u{u:04x}")
                            }
                        })
                        .collect()
                }),
            ]
        }

        fn string() -> impl Strategy<Value = String> {
            prop::collection::vec(string_piece(), 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
        }

        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("null".to_string()),
                Just("true".to_string()),
                Just("false".to_string()),
                number(),
                string(),
            ];
            // Depth stays far below serde_json's recursion limit (128).
            leaf.prop_recursive(6, 48, 5, |inner| {
                let item = (ws(), inner, ws())
                    .prop_map(|(a, v, b)| format!("{a}{v}{b}"))
                    .boxed();
                prop_oneof![
                    prop::collection::vec(item.clone(), 0..5)
                        .prop_map(|items| format!("[{}]", items.join(","))),
                    prop::collection::vec((ws(), string(), ws(), item), 0..5).prop_map(|members| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(a, k, b, v)| format!("{a}{k}{b}:{v}"))
                            .collect();
                        format!("{{{}}}", members.join(","))
                    }),
                ]
            })
        }

        #[derive(Debug, Clone)]
        enum Mutation {
            FlipBit(Index, u8),
            Insert(Index, Vec<u8>),
            Delete(Index, usize),
            Truncate(Index),
        }

        /// Bytes worth inserting: JSON syntax, escape and number characters, control
        /// characters and UTF-8 lead, continuation and never-valid bytes.
        fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                2 => any::<u8>(),
                3 => prop::sample::select(
                    b"\"\\u/bnx0123456789abcdefABCDEF-+.eE,:[]{} \t\n\x00\x01\x1f\x7f\
                      \x80\xbf\xc0\xc1\xc2\xdf\xe0\xed\xef\xf0\xf4\xf5\xff"
                        .to_vec()
                ),
            ];
            prop_oneof![
                3 => prop::collection::vec(byte, 1..4),
                1 => prop::sample::select(vec![
                    b"\\uD800".to_vec(),
                    b"\\uDC00".to_vec(),
                    b"\\uD83D\\uDE00".to_vec(),
                    b"\xf0\x9f\x98\x80".to_vec(),
                    b"\xed\xa0\x80".to_vec(),
                    b"1e".to_vec(),
                ]),
            ]
        }

        fn mutation() -> impl Strategy<Value = Mutation> {
            prop_oneof![
                3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
                4 => (any::<Index>(), interesting_bytes()).prop_map(|(at, b)| Mutation::Insert(at, b)),
                2 => (any::<Index>(), 1usize..4).prop_map(|(at, n)| Mutation::Delete(at, n)),
                1 => any::<Index>().prop_map(Mutation::Truncate),
            ]
        }

        fn mutate(mut doc: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
            for m in mutations {
                match m {
                    Mutation::FlipBit(at, bit) if !doc.is_empty() => {
                        let at = at.index(doc.len());
                        doc[at] ^= 1 << bit;
                    }
                    Mutation::Insert(at, bytes) => {
                        let at = at.index(doc.len() + 1);
                        doc.splice(at..at, bytes.iter().copied());
                    }
                    Mutation::Delete(at, n) if !doc.is_empty() => {
                        let at = at.index(doc.len());
                        doc.drain(at..(at + n).min(doc.len()));
                    }
                    Mutation::Truncate(at) => doc.truncate(at.index(doc.len() + 1)),
                    _ => {}
                }
            }
            doc
        }

        /// serde_json's verdict; `None` where it differs from RFC 8259 by design (number range,
        /// recursion limit), so there is nothing to compare.
        fn serde_value(doc: &[u8]) -> Option<Result<Value, serde_json::Error>> {
            match serde_json::from_slice::<Value>(doc) {
                Err(e)
                    if ["number out of range", "recursion limit exceeded"]
                        .iter()
                        .any(|m| e.to_string().starts_with(m)) =>
                {
                    None
                }
                r => Some(r),
            }
        }

        fn check_validity(doc: &[u8]) -> Result<(), TestCaseError> {
            let Some(theirs) = serde_value(doc) else {
                return Ok(());
            };
            let shown = doc.escape_ascii().to_string();
            prop_assert_eq!(is_valid_json(doc), theirs.is_ok(), "{} {:?}", shown, theirs);
            let is_object = matches!(theirs, Ok(Value::Object(_)));
            prop_assert_eq!(top_level_keys(doc, &[]).is_some(), is_object, "{}", shown);
            Ok(())
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn is_valid_json_agrees_with_serde_json_on_generated_json(doc in value()) {
                prop_assert!(is_valid_json(doc.as_bytes()), "{}", doc);
                check_validity(doc.as_bytes())?;
            }

            #[test]
            fn is_valid_json_agrees_with_serde_json_on_mutated_json(
                doc in value(),
                mutations in prop::collection::vec(mutation(), 1..4),
            ) {
                check_validity(&mutate(doc.into_bytes(), &mutations))?;
            }
        }

        /// Top-level keys that matter to `scan`, in every spelling, and some that do not.
        fn key() -> impl Strategy<Value = String> {
            let name = prop::sample::select(vec!["model", "stream", "user", "metadata"]);
            prop_oneof![
                4 => name.clone().prop_map(|n| format!("\"{n}\"")),
                // Random case, random letters escaped.
                2 => (name, prop::collection::vec((prop::bool::weighted(0.2), prop::bool::weighted(0.3)), 8)).prop_map(
                    |(n, flips)| {
                        let spelled: String = n
                            .chars()
                            .zip(flips)
                            .map(|(c, (upper, escaped))| {
                                let c = if upper { c.to_ascii_uppercase() } else { c };
                                if escaped {
                                    format!("\\u{:04x}", c as u32)
                                } else {
                                    c.to_string()
                                }
                            })
                            .collect();
                        format!("\"{spelled}\"")
                    }
                ),
                // Characters that look like or upper-case into ASCII letters.
                1 => prop::sample::select(vec![
                    "\"\u{17F}tream\"", "\"\\u017Ftream\"", "\"\u{FB05}ream\"", "\"str\u{131}am\"",
                    "\"mode\u{2113}\"", "\"\u{212A}\"", "\"messages\"", "\"models\"",
                ])
                .prop_map(String::from),
                2 => string(),
            ]
        }

        fn member_value() -> impl Strategy<Value = String> {
            prop_oneof![
                2 => string(),
                2 => prop::sample::select(vec!["true", "false", "null"]).prop_map(String::from),
                1 => value(),
            ]
        }

        /// Objects with a string `model` most of the time, so that `scan` often succeeds.
        fn top_level_object() -> impl Strategy<Value = String> {
            let member = (ws(), key(), ws(), ws(), member_value(), ws())
                .prop_map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"));
            let model = prop::option::weighted(0.8, (any::<Index>(), string()));
            (prop::collection::vec(member, 0..5), model).prop_map(|(mut members, model)| {
                if let Some((at, name)) = model {
                    members.insert(at.index(members.len() + 1), format!("\"model\":{name}"));
                }
                format!("{{{}}}", members.join(","))
            })
        }

        /// What `scan` must return, computed with serde_json; `InvalidJson` compares by kind.
        #[derive(Debug, PartialEq)]
        enum Outcome {
            Scanned {
                model: String,
                stream: bool,
                user: Option<Value>,
                metadata: Option<Value>,
            },
            Failed(BodyError),
        }

        /// A JSON object's members in order, duplicates kept (serde_json's `Map` drops them).
        struct Members(Vec<(String, Value)>);

        impl<'de> serde::Deserialize<'de> for Members {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visit;
                impl<'de> serde::de::Visitor<'de> for Visit {
                    type Value = Members;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Members, A::Error> {
                        let mut members = Vec::new();
                        while let Some(member) = map.next_entry()? {
                            members.push(member);
                        }
                        Ok(Members(members))
                    }
                }
                d.deserialize_map(Visit)
            }
        }

        fn invalid_json() -> Outcome {
            Outcome::Failed(BodyError::InvalidJson {
                offset: 0,
                what: "",
            })
        }

        fn kind_of(v: &Value) -> &'static str {
            match v {
                Value::Object(_) => "an object",
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Bool(_) => "a boolean",
                Value::Null => "null",
                Value::Number(_) => "a number",
            }
        }

        /// Whether an upstream that upper-cases keys with Unicode's one-to-one mappings (as
        /// Go's encoding/json does) would read `key` as `name`.
        fn upper_cases_to(key: &str, name: &str) -> bool {
            key.chars().all(|c| c.to_uppercase().count() == 1)
                && key
                    .chars()
                    .flat_map(char::to_uppercase)
                    .eq(name.chars().flat_map(char::to_uppercase))
        }

        fn reference_scan(doc: &[u8]) -> Option<Outcome> {
            if doc.iter().all(|c| b" \t\r\n".contains(c)) {
                return Some(Outcome::Failed(BodyError::Empty));
            }
            let value = match serde_value(doc)? {
                Err(_) => return Some(invalid_json()),
                Ok(v) => v,
            };
            if !value.is_object() {
                return Some(Outcome::Failed(BodyError::NotAnObject {
                    found: kind_of(&value),
                }));
            }
            let Members(members) = serde_json::from_slice(doc).expect("an object");
            let fail = |e| Some(Outcome::Failed(e));
            let (mut model, mut stream, mut user, mut metadata) = (None, None, None, None);
            for (key, value) in members {
                match key.as_str() {
                    "model" if model.is_some() => {
                        return fail(BodyError::DuplicateKey { key: "model" })
                    }
                    "stream" if stream.is_some() => {
                        return fail(BodyError::DuplicateKey { key: "stream" })
                    }
                    "model" => model = Some(value),
                    "stream" => stream = Some(value),
                    "user" => user = Some(value),
                    "metadata" => metadata = Some(value),
                    _ => {
                        for canonical in ["model", "stream"] {
                            if upper_cases_to(&key, canonical) {
                                return fail(BodyError::AmbiguousKey { key, canonical });
                            }
                        }
                    }
                }
            }
            let model = match model {
                None => return fail(BodyError::MissingModel),
                Some(Value::String(m)) => m,
                Some(other) => {
                    return fail(BodyError::ModelNotString {
                        found: kind_of(&other),
                    })
                }
            };
            let stream = match stream {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => b,
                Some(_) => return fail(BodyError::StreamNotBool),
            };
            Some(Outcome::Scanned {
                model,
                stream,
                user,
                metadata,
            })
        }

        fn our_scan(doc: &[u8]) -> Result<Outcome, TestCaseError> {
            let s = match scan(doc) {
                Err(BodyError::InvalidJson { .. }) => return Ok(invalid_json()),
                Err(e) => return Ok(Outcome::Failed(e)),
                Ok(s) => s,
            };
            // The spans must hold exactly the values they claim to.
            let span_value = |span: Option<Range<usize>>| {
                span.map(|r| serde_json::from_slice::<Value>(&doc[r]).expect("span is a value"))
            };
            prop_assert_eq!(
                span_value(Some(s.model_span.clone())),
                Some(Value::String(s.model.clone()))
            );
            Ok(Outcome::Scanned {
                model: s.model,
                stream: s.stream,
                user: span_value(s.spans.user),
                metadata: span_value(s.spans.metadata),
            })
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn scan_agrees_with_a_serde_json_reference(
                doc in top_level_object(),
                mutations in prop_oneof![
                    2 => Just(Vec::new()),
                    1 => prop::collection::vec(mutation(), 1..3),
                ],
            ) {
                let doc = mutate(doc.into_bytes(), &mutations);
                if let Some(expected) = reference_scan(&doc) {
                    prop_assert_eq!(our_scan(&doc)?, expected, "{}", doc.escape_ascii().to_string());
                }
            }
        }
    }
}
