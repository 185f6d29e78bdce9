//! Line diff of non-JSON bodies with `similar`, bounded by a deadline and an input cap.

use crate::json::{truncate_chars, Collector};
use shadowdiff_model::DiffKind;
use similar::{Algorithm, ChangeTag, TextDiff};
use std::time::Instant;

/// Text beyond this many bytes is not line-diffed; the excerpts come from the first difference.
const MAX_TEXT_DIFF_BYTES: usize = 64 * 1024;
const EXCERPT_CHARS: usize = 200;

/// Appends one `text` difference at `path` when the texts differ.
pub(crate) fn diff_text(control: &str, candidate: &str, path: &str, c: &mut Collector<'_>) {
    if control == candidate {
        return;
    }
    let (control_part, candidate_part) = (
        prefix_at_char_boundary(control, MAX_TEXT_DIFF_BYTES),
        prefix_at_char_boundary(candidate, MAX_TEXT_DIFF_BYTES),
    );
    let deadline = Instant::now() + c.rules.text_deadline;
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .deadline(deadline)
        .diff_lines(control_part, candidate_part);
    let mut removed = String::new();
    let mut added = String::new();
    for change in diff.iter_all_changes() {
        let target = match change.tag() {
            ChangeTag::Delete => &mut removed,
            ChangeTag::Insert => &mut added,
            ChangeTag::Equal => continue,
        };
        if target.len() < EXCERPT_CHARS * 4 {
            target.push_str(change.value());
        }
        if removed.len() >= EXCERPT_CHARS * 4 && added.len() >= EXCERPT_CHARS * 4 {
            break;
        }
    }
    if removed.is_empty() && added.is_empty() {
        // Differences beyond the diffed prefix.
        let at = first_difference(control, candidate);
        removed = control
            .get(at..)
            .unwrap_or_default()
            .chars()
            .take(EXCERPT_CHARS)
            .collect();
        added = candidate
            .get(at..)
            .unwrap_or_default()
            .chars()
            .take(EXCERPT_CHARS)
            .collect();
    }
    c.push(
        path,
        DiffKind::Text,
        Some(truncate_chars(
            removed.trim_end().to_string(),
            EXCERPT_CHARS,
        )),
        Some(truncate_chars(added.trim_end().to_string(), EXCERPT_CHARS)),
    );
}

fn prefix_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn first_difference(a: &str, b: &str) -> usize {
    let mut at = a
        .bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    while !a.is_char_boundary(at) || !b.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    #[test]
    fn reports_changed_lines() {
        let rules = Rules::default();
        let mut c = Collector::new(&rules);
        diff_text("a\nb\nc\n", "a\nB\nc\n", "body", &mut c);
        assert_eq!(c.out.len(), 1);
        assert_eq!(c.out[0].control.as_deref(), Some("b"));
        assert_eq!(c.out[0].candidate.as_deref(), Some("B"));
    }

    #[test]
    fn huge_inputs_finish_quickly() {
        let rules = Rules::default();
        let a: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let b: String = (0..200_000)
            .map(|i| format!("line {}\n", i * 7 % 200_000))
            .collect();
        let mut c = Collector::new(&rules);
        diff_text(&a, &b, "body", &mut c);
        assert_eq!(c.out.len(), 1);
    }
}
