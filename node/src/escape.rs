//! Text that came from a node (which may quote a peer) made safe to print on a terminal.

use std::borrow::Cow;

/// `text` with its control characters escaped (`\u{1b}`, `\n`, `\t`…), so
/// that a node or a peer cannot move the cursor, rewrite earlier lines, set
/// the window title or fake a second line. Bidirectional overrides and
/// isolates are escaped too (they reorder what the operator reads). Every
/// other character, `é` included, is kept as it is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text from outside made safe for a terminal while staying valid
/// JSON: DEL, C1 controls and bidi marks (which serde_json writes as they
/// are) become `\u` escapes of four hex digits (DEL is `\u007f`); C0
/// controls are escaped by serde_json already, and these characters can
/// stand only inside strings.
pub fn json_text(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(c),
            c if is_unsafe(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::{escape_controls, json_text};

    #[test]
    fn json_from_outside_stays_valid_json_without_controls_or_bidi_marks() {
        let value = serde_json::json!({ "purpose": "a\u{202e}b\u{7f}c\u{85}d\ne" });
        let pretty = serde_json::to_string_pretty(&value).expect("json");
        let safe = json_text(&pretty);
        assert!(
            !safe
                .chars()
                .any(|c| c == '\u{202e}' || c == '\u{7f}' || c == '\u{85}')
        );
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, value, "the same value");
        assert!(safe.contains("\\u202e"), "{safe}");
    }

    #[test]
    fn an_escape_sequence_and_a_newline_from_a_peer_come_out_escaped() {
        let message = "refusé par caf12\u{1b}[2J\u{1b}]0;pwned\u{7}\nmaillon: ok";
        assert_eq!(
            escape_controls(message),
            "refusé par caf12\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\nmaillon: ok"
        );
    }

    #[test]
    fn ordinary_text_is_kept_as_it_is() {
        let text = "Motif : étude du droit — « logement » 😀";
        assert!(matches!(
            escape_controls(text),
            std::borrow::Cow::Borrowed(t) if t == text
        ));
    }

    #[test]
    fn c1_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(escape_controls("a\u{9b}b\u{202e}c"), "a\\u{9b}b\\u{202e}c");
    }
}
