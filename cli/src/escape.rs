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

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

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
