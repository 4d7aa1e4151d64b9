//! Hints for indentation mistakes. YAML reads a key written one level too shallow or too deep
//! as a different structure, and serde then reports a type error ("expected mapping start",
//! "unknown field") that does not say what went wrong; these hints look at the lines around
//! the error and say it.

/// A hint for the error on 1-based `line` of `text`, or `None` when nothing there looks like
/// an indentation mistake.
pub(super) fn hint(text: &str, line: usize, message: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = line.checked_sub(1).filter(|&i| i < lines.len())?;
    let here = Line::parse(lines[at])?;
    // The content lines just before and after the error's line (comments and blanks skipped).
    let prev = lines[..at].iter().rev().find_map(|l| Line::parse(l));
    let next = lines[at + 1..].iter().find_map(|l| Line::parse(l));
    let check = |what: String| Some(format!("check the indentation: {what}"));

    // `name:` with nothing deeper under it: the lines meant for it were not indented.
    if here.opens_block()
        && next
            .as_ref()
            .is_some_and(|n| n.indent <= here.indent && !n.item)
    {
        let name = here.key?;
        return check(format!(
            "`{name}:` has nothing indented under it, so the lines after it are not part of \
             it; indent them deeper than `{name}:` (two more spaces)"
        ));
    }
    // A key indented deeper than a line that already has its value: YAML's own error
    // ("mapping values are not allowed", "did not find expected key") does not say so.
    let syntax = [
        "mapping values are not allowed",
        "did not find expected key",
    ];
    if syntax.iter().any(|m| message.contains(m)) {
        let p = prev
            .as_ref()
            .filter(|p| here.indent > p.indent && !p.opens_block())?;
        let above = p.key.map_or(String::new(), |k| format!(" (`{k}`)"));
        return check(format!(
            "this line is indented deeper than the line above it{above}, which already has \
             its value; line it up with the keys around it"
        ));
    }
    // A list item where key: value lines were expected.
    if expects_mapping(message) && here.item {
        return check(
            "`- ` starts a list item, but key: value lines are expected here; remove the `- `"
                .to_string(),
        );
    }
    // Key: value lines where a list was expected.
    if message.contains("expected sequence start") || message.contains("expected a sequence") {
        return check("a list is expected here: start each entry with `- `".to_string());
    }
    // The line just above opens a block at the same depth: this line was meant to go in it
    // (a list item may sit at its key's depth: that is valid YAML).
    let opener = prev
        .as_ref()
        .filter(|p| p.opens_block() && p.indent == here.indent && !here.item);
    if let Some(p) = opener {
        let (name, key) = (p.key?, here.key?);
        return check(format!(
            "`{name}:` just above has nothing indented under it; if `{key}` belongs to \
             `{name}`, indent it (two more spaces)"
        ));
    }
    // A field written on a later line, but not under the entry that misses it.
    if let Some(field) = quoted_after(message, "missing field `") {
        let found = lines[at + 1..]
            .iter()
            .take(8)
            .position(|l| Line::parse(l).is_some_and(|l| l.key == Some(field)))?;
        return check(format!(
            "`{field}` is on line {} but not under this entry: line it up with the entry's \
             other keys",
            line + 1 + found
        ));
    }
    // A value on the line of a key that takes key: value lines.
    if expects_mapping(message) && !here.opens_block() {
        let key = here.key?;
        // Back at an entry's depth after lines deeper than it: a setting written one level
        // too shallow, read as an entry's name.
        if here.indent > 0 && prev.as_ref().is_some_and(|p| p.indent > here.indent) {
            return check(format!(
                "`{key}` is read as a name of its own here; if it is a setting of the entry \
                 above it, indent it like that entry's other settings"
            ));
        }
        let what = if here.value.starts_with(['[', '-']) {
            "a list"
        } else {
            "a value after the colon"
        };
        return Some(format!(
            "`{key}` takes key: value lines, indented under it, not {what}"
        ));
    }
    // A plain value that ran on into the next line: that line is indented too deeply.
    if let Some(value) = quoted_after(message, "unknown variant `") {
        if value.contains(char::is_whitespace) {
            return check(format!(
                "the value {value:?} runs on into the next line; is that line indented deeper \
                 than the one above it?"
            ));
        }
    }
    None
}

/// serde's words for "a mapping was expected here", with the internal type names gone.
pub(super) fn tidy(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("struct Raw") {
        out.push_str(&rest[..i]);
        out.push_str("a mapping");
        let tail = &rest[i + "struct Raw".len()..];
        rest = tail.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    out
}

fn expects_mapping(message: &str) -> bool {
    [
        "expected mapping start",
        "expected struct",
        "expected a map",
        "invalid type",
    ]
    .iter()
    .any(|m| message.contains(m))
}

fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// One content line: its indentation, whether it is a list item, and its key if it has one.
struct Line<'a> {
    indent: usize,
    item: bool,
    key: Option<&'a str>,
    /// The text after `key:` (empty for `name:` opening a block).
    value: &'a str,
}

impl<'a> Line<'a> {
    fn parse(raw: &'a str) -> Option<Line<'a>> {
        let body = raw.trim_start_matches(' ');
        if body.trim().is_empty() || body.starts_with('#') {
            return None;
        }
        let indent = raw.len() - body.len();
        let (item, body) = match body.strip_prefix("- ") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, body),
        };
        let (key, value) = match body.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains([' ', '{', '[', '"', '\'']) => {
                (Some(k), v)
            }
            _ => (None, ""),
        };
        let value = value.split(" #").next().unwrap_or("").trim();
        Some(Line {
            indent,
            item,
            key,
            value,
        })
    }

    /// `name:` with no value on its line: a block whose content must follow, indented.
    fn opens_block(&self) -> bool {
        self.key.is_some() && self.value.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indentation_mistakes_get_a_hint_that_names_them() {
        // (yaml, the error's line, serde's message, a fragment of the hint)
        let cases = [
            (
                "backends:\n  anthropic:\n  api: anthropic_messages\n",
                2,
                "expected mapping start",
                "`anthropic:` has nothing indented under it",
            ),
            (
                "backends:\n  anthropic:\n    api: anthropic_messages\n  base_url: https://x\n",
                4,
                "expected mapping start",
                "`base_url` is read as a name of its own here",
            ),
            (
                "backends:\n  a: {}\nhealth:\n  cooldown:\n  base: 1s\n",
                5,
                "unknown field `base`, expected one of store, redis",
                "`cooldown:` just above has nothing indented under it; if `base` belongs",
            ),
            (
                "backends:\nanthropic:\n  api: anthropic_messages\n",
                2,
                "unknown field `anthropic`, expected one of listen, backends",
                "`backends:` just above has nothing indented under it",
            ),
            (
                "routes:\n  main:\n    chain:\n    - backend: a\n    model: m\n",
                4,
                "missing field `model`",
                "`model` is on line 5 but not under this entry",
            ),
            (
                "backends:\n  a:\n    api: anthropic_messages\n     base_url: x\n",
                3,
                "unknown variant `anthropic_messages base_url`, expected one of openai_chat",
                "runs on into the next line",
            ),
            (
                "backends:\n  a:\n    api: openai_chat\n  base_url: x\n",
                4,
                "invalid type: string \"x\", expected struct RawBackend",
                "is read as a name of its own",
            ),
            (
                "backends:\n  a:\n    - api: openai_chat\n",
                3,
                "expected mapping start",
                "remove the `- `",
            ),
            (
                "routes:\n  main:\n    chain:\n      backend: a\n      model: m\n",
                4,
                "expected sequence start",
                "start each entry with `- `",
            ),
            (
                "backends:\n  a:\n    api: openai_chat\n    base_url: \"http://x\"\n      api_key_env: A\n",
                5,
                "while parsing a block mapping, did not find expected key",
                "indented deeper than the line above it (`base_url`), which already has its value",
            ),
            (
                "listen: 127.0.0.1:8080\n  backends:\n",
                2,
                "mapping values are not allowed in this context",
                "indented deeper than the line above it (`listen`)",
            ),
            (
                "backends:\n  a: 5\n",
                2,
                "expected mapping start",
                "`a` takes key: value lines, indented under it, not a value after the colon",
            ),
            (
                "backends: [a]\n",
                1,
                "expected mapping start",
                "`backends` takes key: value lines, indented under it, not a list",
            ),
        ];
        for (yaml, line, message, want) in cases {
            let got = hint(yaml, line, message).unwrap_or_default();
            assert!(got.contains(want), "{yaml}\n→ {got:?}\nwanted {want}");
        }
    }

    #[test]
    fn other_errors_get_no_hint_and_type_names_are_not_shown() {
        let yaml = "backends:\n  a:\n    api: openai_chat\n    bse_url: x\n";
        assert_eq!(
            hint(yaml, 4, "unknown field `bse_url`, expected one of provider"),
            None
        );
        assert_eq!(
            hint(
                yaml,
                3,
                "unknown variant `openai`, expected one of openai_chat"
            ),
            None
        );
        assert_eq!(hint(yaml, 99, "expected mapping start"), None);
        assert_eq!(
            tidy("invalid type: string \"x\", expected struct RawBackend"),
            "invalid type: string \"x\", expected a mapping"
        );
    }
}
