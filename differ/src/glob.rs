//! Path globs: `*` matches within one dotted segment, `**` matches across segments.
//!
//! Globs are matched against aggregate paths (indexes collapsed to `[*]`), so
//! `body.items[*].price`, `body.*.price` and `body.**.price` all match `body.items[3].price`.

/// A compiled path glob from the rules (`ignore`, `case_insensitive`, array and scrub paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    pattern: String,
}

impl PathGlob {
    /// A glob from its pattern; every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_string(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Matches an aggregate path (`[*]` indexes).
    pub fn matches(&self, path: &str) -> bool {
        glob_match(self.pattern.as_bytes(), path.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => {
            // `a.**.b` also matches `a.b`: let `**.` swallow nothing.
            let rest_no_dot = rest.strip_prefix(b".").unwrap_or(rest);
            (0..=text.len())
                .any(|i| glob_match(rest, &text[i..]) || glob_match(rest_no_dot, &text[i..]))
        }
        [b'*', rest @ ..] => {
            let mut i = 0;
            loop {
                if glob_match(rest, &text[i..]) {
                    return true;
                }
                if i == text.len() || text[i] == b'.' {
                    return false;
                }
                i += 1;
            }
        }
        [c, rest @ ..] => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_double_star() {
        let g = PathGlob::new;
        assert!(g("body.*.price").matches("body.items[*].price"));
        assert!(!g("body.*.price").matches("body.a.b.price"));
        assert!(g("body.**.price").matches("body.a.b.price"));
        assert!(g("body.**.price").matches("body.price"));
        assert!(g("body.**").matches("body.x[*].y"));
        assert!(g("headers.x-*").matches("headers.x-trace"));
        assert!(!g("body.a").matches("body.ab"));
        assert!(g("body.items[*].price").matches("body.items[*].price"));
    }
}
