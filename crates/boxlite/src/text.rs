//! Text from a guest, made safe to print: a hostile guest's console output or error message
//! must not drive the terminal of whoever reads an error (escape sequences can retitle the
//! window, rewrite the screen or, on some terminals, answer back keystrokes).

/// `text` with every control character but newline and tab shown as `\x..` (or `\u{..}`
/// for C1 controls), so that no escape sequence reaches a terminal.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_sent() {
        assert_eq!(printable("ok\n\tline"), "ok\n\tline");
        assert_eq!(printable("\x1b]0;pwned\x07x"), "\\x1b]0;pwned\\x07x");
        assert_eq!(printable("a\rb\u{9b}c\u{7f}"), "a\\x0db\\u{9b}c\\x7f");
        assert_eq!(printable("héllo ✓"), "héllo ✓");
    }
}
