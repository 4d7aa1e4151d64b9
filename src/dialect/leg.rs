//! A chain entry's leg: how one client request crosses to that entry's backend.
//!
//! Chosen once per entry (`Leg::new(client, backend)`), it is the only place that asks whether
//! the two dialects differ. Everything that depends on the answer goes through it: the body
//! sent upstream, which client headers may follow it, the answer and the stream coming back,
//! and whether an upstream error body can be handed back as it is. A third dialect adds arms
//! here and translation pairs in `translate`, not branches in the engine.

use std::ops::Range;

use bytes::Bytes;

use super::translate::{self, StreamTranslator, TranslateError};
use super::Dialect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// Same dialect: the body passes through untouched but for `model`; answers, streams and
    /// errors come back byte for byte.
    Passthrough(Dialect),
    /// The backend speaks another dialect: request, answer, stream and errors are translated.
    Translate { client: Dialect, backend: Dialect },
}

impl Leg {
    pub fn new(client: Dialect, backend: Dialect) -> Leg {
        if client == backend {
            Leg::Passthrough(client)
        } else {
            Leg::Translate { client, backend }
        }
    }

    pub fn client(self) -> Dialect {
        match self {
            Leg::Passthrough(d) => d,
            Leg::Translate { client, .. } => client,
        }
    }

    pub fn backend(self) -> Dialect {
        match self {
            Leg::Passthrough(d) => d,
            Leg::Translate { backend, .. } => backend,
        }
    }

    /// The body for the backend: the client's bytes with `model` spliced in (passthrough), or
    /// the request translated into the backend's dialect (with the offered built-in tools the
    /// backend cannot run, dropped).
    pub fn request(
        self,
        body: &[u8],
        model_span: &Range<usize>,
        model_json: &[u8],
        model: &str,
        opts: &translate::Options,
    ) -> Result<translate::Translated, TranslateError> {
        match self {
            Leg::Passthrough(_) => Ok(translate::Translated {
                body: crate::body::with_model(body, model_span, model_json),
                dropped_tools: Vec::new(),
            }),
            Leg::Translate { client, backend } => {
                translate::translate_request(client, backend, body, model, opts)
            }
        }
    }

    /// Whether the client's own Anthropic headers (`anthropic-version`, `anthropic-beta`) may
    /// go upstream: only to an Anthropic backend serving an Anthropic client.
    pub fn forwards_anthropic_headers(self) -> bool {
        self == Leg::Passthrough(Dialect::Anthropic)
    }

    /// A successful non-streaming answer in the client's dialect. A panic while translating
    /// is caught and reported as [`TranslateError::Bug`]: the engine then blames the gateway,
    /// not the backend that answered correctly.
    /// `custom_tools` names a Responses client's freeform tools; asked only when translating
    /// for such a client (it parses the request).
    pub fn response(
        self,
        body: Bytes,
        client_model: &str,
        custom_tools: impl FnOnce() -> Vec<String>,
    ) -> Result<Bytes, TranslateError> {
        match self {
            Leg::Passthrough(_) => Ok(body),
            Leg::Translate { client, backend } => {
                let custom = match client {
                    Dialect::Responses => custom_tools(),
                    _ => Vec::new(),
                };
                std::panic::catch_unwind(|| {
                    translate::response_for(backend, client, &body, client_model, &custom)
                })
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(TranslateError::Bug(what))
                })
            }
        }
    }

    /// The incremental translator for a stream, when the dialects differ. `wants_usage` says
    /// whether an OpenAI client asked for a usage chunk; it is asked only when translating (it
    /// may parse the body).
    pub fn stream_translator(
        self,
        client_model: &str,
        wants_usage: impl FnOnce() -> bool,
        custom_tools: impl FnOnce() -> Vec<String>,
    ) -> Option<StreamTranslator> {
        match self {
            Leg::Passthrough(_) => None,
            Leg::Translate { client, backend } => {
                let t = StreamTranslator::new(
                    backend,
                    client,
                    client_model,
                    client == Dialect::OpenAi && wants_usage(),
                );
                Some(match client {
                    Dialect::Responses => t.with_custom_tools(custom_tools()),
                    _ => t,
                })
            }
        }
    }

    /// Whether an upstream error body is already in the client's dialect (so it can be handed
    /// back, scrubbed, rather than re-shaped).
    pub fn errors_pass_through(self) -> bool {
        matches!(self, Leg::Passthrough(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leg_translates_exactly_when_the_dialects_differ() {
        for client in Dialect::ALL {
            for backend in Dialect::ALL {
                let leg = Leg::new(client, backend);
                let same = client == backend;
                assert_eq!((leg.client(), leg.backend()), (client, backend));
                assert_eq!(leg.errors_pass_through(), same, "{leg:?}");
                assert_eq!(
                    leg.stream_translator("m", || true, Vec::new).is_none(),
                    same,
                    "{leg:?}"
                );
                assert_eq!(
                    leg.forwards_anthropic_headers(),
                    same && client == Dialect::Anthropic,
                    "{leg:?}"
                );
            }
        }
    }

    #[test]
    fn passthrough_splices_the_model_and_leaves_every_other_byte() {
        let body = br#"{"model":"route","x":[1, 2]}"#;
        let leg = Leg::new(Dialect::OpenAi, Dialect::OpenAi);
        let opts = translate::Options {
            default_max_tokens: 1,
            strict: false,
        };
        let out = leg
            .request(body, &(9..16), br#""gpt-4o""#, "gpt-4o", &opts)
            .unwrap();
        assert_eq!(&out.body[..], br#"{"model":"gpt-4o","x":[1, 2]}"#);
        assert!(out.dropped_tools.is_empty());
        let answer = Bytes::from_static(b"{\"id\":1}");
        assert_eq!(
            leg.response(answer.clone(), "route", Vec::new).unwrap(),
            answer
        );
    }
}
