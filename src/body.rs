//! The request body on the hot path: located, not deserialized.
//!
//! Same-dialect forwarding only needs two facts from the body (`model` and `stream`) and one
//! edit (`model` rewritten to the chain entry's model). [`scan`] walks the top-level object once,
//! validating JSON structure without building values, and records where those two keys sit;
//! [`with_model`] splices the new model in. Every other byte is forwarded as the client sent it,
//! unknown fields included.

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
    #[error("`stream` must be a boolean")]
    StreamNotBool,
}

/// The parts of a request body the gateway needs, found in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The client's `model` (the route name), unescaped.
    pub model: String,
    /// Byte range of the `model` value (including its quotes), for the rewrite.
    pub model_span: Range<usize>,
    pub stream: bool,
    /// Where OpenAI's `user` and Anthropic's `metadata` sit, for sessions taken from the body.
    pub user_span: Option<Range<usize>>,
    pub metadata_span: Option<Range<usize>>,
}

const MAX_DEPTH: usize = 256;

/// Validates `body` as a JSON object and locates `model` and `stream` at its top level.
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
    let mut user: Option<Range<usize>> = None;
    let mut metadata: Option<Range<usize>> = None;
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
            let raw_key = &body[key.start + 1..key.end - 1];
            let is = |name: &str| {
                raw_key == name.as_bytes()
                    || (raw_key.contains(&b'\\')
                        && serde_json::from_slice::<String>(&body[key.clone()])
                            .is_ok_and(|k| k == name))
            };
            if is("model") {
                if model.replace(span).is_some() {
                    return Err(BodyError::DuplicateKey { key: "model" });
                }
            } else if is("stream") {
                if stream.replace(span).is_some() {
                    return Err(BodyError::DuplicateKey { key: "stream" });
                }
            } else if is("user") {
                user = Some(span);
            } else if is("metadata") {
                metadata = Some(span);
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

    let model_span = model.ok_or(BodyError::MissingModel)?;
    let model_raw = &body[model_span.clone()];
    if model_raw[0] != b'"' {
        return Err(BodyError::ModelNotString {
            found: kind_name(model_raw[0]),
        });
    }
    let model = if model_raw.contains(&b'\\') {
        serde_json::from_slice::<String>(model_raw).map_err(|_| BodyError::InvalidJson {
            offset: model_span.start,
            what: "invalid escape in `model`",
        })?
    } else {
        match std::str::from_utf8(&model_raw[1..model_raw.len() - 1]) {
            Ok(m) => m.to_string(),
            Err(_) => {
                return Err(BodyError::InvalidJson {
                    offset: model_span.start,
                    what: "`model` is not valid UTF-8",
                })
            }
        }
    };
    let stream = match stream.map(|r| &body[r]) {
        None | Some(b"false") | Some(b"null") => false,
        Some(b"true") => true,
        Some(_) => return Err(BodyError::StreamNotBool),
    };
    Ok(Scanned {
        model,
        model_span,
        stream,
        user_span: user,
        metadata_span: metadata,
    })
}

/// `body` with the bytes at `span` replaced by `model_json` (an encoded JSON string).
pub fn with_model(body: &[u8], span: &Range<usize>, model_json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() - span.len() + model_json.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(model_json);
    out.extend_from_slice(&body[span.end..]);
    Bytes::from(out)
}

/// Which of `keys` are present at the top level of a JSON object (bit i for `keys[i]`), in
/// one pass without a full parse; `None` when `body` is not a JSON object. Used on upstream
/// 2xx bodies, to catch an `{"error":…}` object some providers send with status 200.
pub fn top_level_keys(body: &[u8], keys: &[&str]) -> Option<u32> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    s.expect(b'{', "").ok()?;
    s.ws();
    if s.peek() == Some(b'}') {
        return Some(0);
    }
    let mut found = 0u32;
    loop {
        s.ws();
        let k = s.string_span().ok()?;
        let raw = &body[k.start + 1..k.end - 1];
        for (i, key) in keys.iter().enumerate() {
            if raw == key.as_bytes() {
                found |= 1 << i;
            }
        }
        s.ws();
        s.expect(b':', "").ok()?;
        s.ws();
        s.value(1).ok()?;
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

/// Whether `body` is one well-formed JSON value (structure only; strings are not unescaped).
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

    /// Skips a string starting at the current `"`; returns its span including the quotes.
    fn string_span(&mut self) -> Result<Range<usize>, BodyError> {
        let start = self.i;
        self.expect(b'"', "expected a string")?;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.b[self.i..]) {
                None => {
                    return Err(BodyError::InvalidJson {
                        offset: self.b.len(),
                        what: "unterminated string",
                    })
                }
                Some(off) => {
                    self.i += off;
                    if self.b[self.i] == b'"' {
                        self.i += 1;
                        return Ok(start..self.i);
                    }
                    // A backslash escapes exactly the next byte (`\uXXXX` digits are plain).
                    self.i += 2;
                    if self.i > self.b.len() {
                        return Err(self.err("unterminated string"));
                    }
                }
            }
        }
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
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                if self.peek() == Some(b'-') {
                    self.i += 1;
                }
                let digits = self.i;
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.peek() {
                    self.i += 1;
                }
                if self.i == digits || !self.b[digits].is_ascii_digit() {
                    return Err(self.err_at(start, "invalid number"));
                }
                Ok(())
            }
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
        assert_eq!(
            top_level_keys(br#"{"error":null,"choices":[]}"#, &keys),
            Some(0b11)
        );
        assert_eq!(top_level_keys(b"not json", &keys), None);
        assert!(is_valid_json(b" [1, {\"a\": 2}] "));
        assert!(!is_valid_json(b"{\"a\": }"));
    }
}
