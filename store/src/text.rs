//! The terminal rendering of a report: fits 80 columns, colour only when asked.

use crate::report::{EndpointReport, Report};
use std::fmt::Write as _;

const WIDTH: usize = 80;

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn verdict(&self, v: &str) -> String {
        match v {
            "regression" => self.wrap("1;31", "REGRESSION"),
            "inconclusive" => self.wrap("35", "INCONCLUSIVE"),
            "noisy" | "noise" => self.wrap("33", &v.to_uppercase()),
            _ => self.wrap("32", &v.to_uppercase()),
        }
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}

/// What a field's verdict stands on, short enough for the field line.
fn evidence_label(evidence: &str) -> &str {
    match evidence {
        "repeated_requests" => "repeats",
        other => other,
    }
}

/// Renders the report for a terminal. `color` should be true only when stdout is a terminal.
pub fn render_text(report: &Report, color: bool) -> String {
    let p = Paint { on: color };
    let mut out = String::new();
    let t = &report.totals;
    let _ = writeln!(
        out,
        "shadowdiff report: {}",
        if report.experiment.is_empty() {
            "(no data)"
        } else {
            &report.experiment
        }
    );
    if let (Some(from), Some(to)) = (&report.window.from, &report.window.to) {
        let _ = writeln!(out, "window: {from} .. {to}");
    }
    let _ = writeln!(
        out,
        "exchanges {}  compared {}  mismatched {}  errors {}  blocked {}  skipped {}",
        t.exchanges, t.compared, t.mismatched, t.errors, t.blocked, t.skipped
    );
    let regressions = report
        .endpoints
        .iter()
        .filter(|e| e.verdict == "regression")
        .count();
    let inconclusive = report
        .endpoints
        .iter()
        .filter(|e| e.verdict == "inconclusive")
        .count();
    let _ = writeln!(
        out,
        "endpoints {}  with regressions {}  inconclusive {}",
        report.endpoints.len(),
        regressions,
        inconclusive
    );
    for e in &report.endpoints {
        out.push('\n');
        endpoint(&mut out, e, &p);
    }
    out
}

fn endpoint(out: &mut String, e: &EndpointReport, p: &Paint) {
    let _ = writeln!(out, "{}", "─".repeat(WIDTH));
    let _ = writeln!(
        out,
        "{} {} {}  candidate {}",
        p.verdict(&e.verdict),
        e.method,
        clip(&e.route, 40),
        e.candidate
    );
    let rate = if e.compared > 0 {
        e.mismatched as f64 * 100.0 / e.compared as f64
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "  compared {}  mismatched {} ({rate:.1}%)  errors {}  blocked {}  skipped {}",
        e.compared, e.mismatched, e.errors, e.blocked, e.skipped
    );
    for line in wrap(&e.verdict_reason, WIDTH - 2, 3) {
        let _ = writeln!(out, "  {}", p.dim(&line));
    }
    for warning in [e.saturation_warning(), e.host_busy_warning()]
        .into_iter()
        .flatten()
    {
        for line in wrap(&warning, WIDTH - 2, 4) {
            let _ = writeln!(out, "  {line}");
        }
    }
    if !e.fields.is_empty() {
        let _ = writeln!(out, "  fields:");
        for f in e.fields.iter().take(12) {
            let _ = writeln!(
                out,
                "    {:<10} {:<30} {:<7} {:>6} {:>6} {}",
                p.verdict(&f.verdict),
                clip_middle(&f.path, 30),
                f.kind,
                f.count,
                f.noise_count,
                evidence_label(&f.evidence)
            );
        }
        if e.fields.len() > 12 {
            let _ = writeln!(out, "    … {} more fields", e.fields.len() - 12);
        }
    }
    let changed: Vec<_> = e
        .status
        .iter()
        .filter(|s| s.control != s.candidate)
        .collect();
    if !changed.is_empty() {
        let pairs: Vec<String> = changed
            .iter()
            .map(|s| format!("{}→{} ×{}", s.control, s.candidate, s.count))
            .collect();
        let _ = writeln!(out, "  status: {}", clip(&pairs.join(", "), WIDTH - 10));
    }
    let l = &e.latency_ms;
    if e.compared > 0 {
        let _ = writeln!(
            out,
            "  latency ms: control p50 {:.1} p99 {:.1} | candidate p50 {:.1} p99 {:.1}",
            l.control_p50, l.control_p99, l.candidate_p50, l.candidate_p99
        );
        let v = &e.latency_verdict;
        if !v.verdict.is_empty() {
            let text = format!("latency verdict: {} ({})", v.verdict, v.reason);
            for line in wrap(&text, WIDTH - 2, 3) {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let r = &e.error_rate;
    if !r.verdict.is_empty() && (r.failures > 0 || r.verdict == "regression") {
        let text = format!("error rate: {} ({})", r.verdict, r.reason);
        for line in wrap(&text, WIDTH - 2, 3) {
            let _ = writeln!(out, "  {line}");
        }
    }
    for c in &e.error_kinds {
        let _ = writeln!(out, "  candidate errors: {} ×{}", c.name, c.count);
    }
    for c in &e.blocked_reasons {
        let _ = writeln!(out, "  blocked: {} ×{}", clip(&c.name, 60), c.count);
    }
    for c in &e.side_effects {
        let _ = writeln!(
            out,
            "  side effect blocked: {} ×{}",
            clip(&c.name, 50),
            c.count
        );
    }
    for s in e.signatures.iter().take(3) {
        let _ = writeln!(
            out,
            "  signature {} ×{}: {}",
            &s.fingerprint[..8.min(s.fingerprint.len())],
            s.count,
            clip(&s.fields.join(", "), 48)
        );
        for line in s.sample.diff.lines().take(6) {
            let _ = writeln!(out, "    {}", clip(line, WIDTH - 4));
        }
    }
}

/// Word-wraps `s` into at most `lines` lines of `width` characters; the last one is clipped.
fn wrap(s: &str, width: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in s.split_whitespace() {
        let needed = current.chars().count() + usize::from(!current.is_empty());
        if !current.is_empty() && needed + word.chars().count() > width {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    if out.len() > lines {
        let rest = out.split_off(lines - 1).join(" ");
        out.push(rest);
    }
    out.into_iter().map(|l| clip(&l, width)).collect()
}

/// Cuts a path to `max` characters in the middle, keeping its root and its leaf.
fn clip_middle(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || max < 5 {
        return clip(s, max);
    }
    let tail = (max - 1) / 2 + (max - 1) % 2;
    let head = max - 1 - tail;
    let mut t: String = s.chars().take(head).collect();
    t.push('…');
    t.extend(s.chars().skip(n - tail));
    t
}

/// Cuts a string to `max` characters with an ellipsis.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{build_report, ReportQuery};

    #[test]
    fn long_reasons_wrap_and_long_paths_keep_their_leaf() {
        let reason = "word ".repeat(60);
        let lines = wrap(&reason, 78, 3);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.chars().count() <= 78));
        assert!(lines[2].ends_with('…'));
        assert_eq!(wrap("short", 78, 3), vec!["short".to_string()]);
        let path = format!("body.{}.price", "nested".repeat(10));
        let clipped = clip_middle(&path, 36);
        assert_eq!(clipped.chars().count(), 36);
        assert!(clipped.starts_with("body.") && clipped.ends_with(".price"));
    }

    #[test]
    fn lines_fit_80_columns_without_colour() {
        let report = build_report(&[], &ReportQuery::default());
        let text = render_text(&report, false);
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH));
        assert!(!text.contains('\x1b'));
    }
}
