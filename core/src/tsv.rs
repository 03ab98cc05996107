//! ClickHouse's `TabSeparated` text: one field's escapes undone.

/// Undoes TabSeparated escaping: `\t`, `\n`, `\r`, `\0`, `\b`, `\f`, and a
/// backslash before any other character (`\\`, `\'`) standing for it.
pub fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_are_undone() {
        assert_eq!(super::unescape(r"a\tb\\c\nd\'e\0"), "a\tb\\c\nd'e\0");
        assert_eq!(super::unescape("plain"), "plain");
        assert_eq!(super::unescape("end\\"), "end\\");
    }
}
