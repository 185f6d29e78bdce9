//! The HTML rendering of a report: one self-contained file (inline CSS, a few lines of inline
//! script, no external assets) that a CI job can publish as an artifact and anyone can open.
//!
//! Every piece of text that comes from traffic (routes, paths, values, reasons) is escaped.

use crate::report::{Count, EndpointReport, FieldReport, Report, Sample, Signature};
use shadowdiff_model::Difference;
use std::fmt::Write as _;

const STYLE: &str = r#"
:root{--fg:#1d2330;--muted:#5d6678;--line:#dde2ea;--bg:#f6f7f9;--card:#fff;
--red:#b42318;--red-bg:#fdecea;--amber:#9a5b00;--amber-bg:#fff4dc;--green:#1e7b34;
--green-bg:#e6f4ea;--grey:#667085;--grey-bg:#eef0f3;--ctl:#3b5bdb;--cand:#c2255c}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
h3{font-size:14px;margin:18px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.sub{color:var(--muted);margin:0 0 16px}
code,pre,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:120px}
.card .n{font-size:22px;font-weight:600}.card .l{color:var(--muted);font-size:12px}
.card.bad .n{color:var(--red)}.card.warn .n{color:var(--amber)}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:11.5px;font-weight:700;
letter-spacing:.03em;text-transform:uppercase;white-space:nowrap}
.b-regression{background:var(--red);color:#fff}.b-noisy{background:var(--amber-bg);color:var(--amber);
border:1px solid #f0c36d}.b-noise{background:var(--grey-bg);color:var(--grey);border:1px dashed #b7bec9}
.b-clean{background:var(--green-bg);color:var(--green)}
.b-inconclusive{background:#f3e8fd;color:#6b21a8;border:1px dashed #c4a5e8}
tr.f-inconclusive td.path{font-style:italic;color:#6b21a8}
.endpoint{background:var(--card);border:1px solid var(--line);border-left:5px solid var(--green);
border-radius:8px;padding:4px 16px 16px;margin:16px 0}
.endpoint.v-regression{border-left-color:var(--red)}.endpoint.v-noisy{border-left-color:#e0a100}
.endpoint>h2{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap;margin:14px 0 6px}
.endpoint>h2 small{font-size:13px;font-weight:400;margin:0}
.reason{color:var(--muted);margin:0 0 8px}
tr.f-regression td{background:var(--red-bg)}tr.f-regression td.path{font-weight:600;color:var(--red)}
tr.f-noise td{color:var(--grey)}tr.f-noise td.path{text-decoration:line-through dotted;text-decoration-color:#b7bec9}
td.path{word-break:break-all}
.sbs{table-layout:fixed}.sbs th:first-child{width:24%}.sbs th:nth-child(2){width:9%}
.sbs td.v{word-break:break-all;white-space:pre-wrap}
.sbs th.ctl{color:var(--ctl)}.sbs th.cand{color:var(--cand)}
.sbs td.ctl{background:#f3f5ff}.sbs td.cand{background:#fff3f7}
.sbs mark{border-radius:2px;padding:0 1px}.sbs td.ctl mark{background:#c5d0fa}.sbs td.cand mark{background:#fbc4d6}
.absent{color:var(--grey);font-style:italic}
.sig{border:1px solid var(--line);border-radius:6px;margin:10px 0;overflow:hidden}
.sig>header{background:#fafbfc;padding:6px 10px;border-bottom:1px solid var(--line)}
.lat{display:grid;grid-template-columns:110px 1fr 90px;gap:3px 10px;align-items:center;max-width:640px}
.bar{height:12px;border-radius:3px;min-width:2px}.bar.ctl{background:var(--ctl)}.bar.cand{background:var(--cand)}
.st-diff td{color:var(--red);font-weight:600}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:0 24px}
ul.counts{margin:4px 0;padding-left:18px}
details>summary{cursor:pointer;color:var(--muted)}
pre{background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:8px;white-space:pre-wrap;word-break:break-all}
a{color:#2f5bd3;text-decoration:none}a:hover{text-decoration:underline}
footer{color:var(--muted);font-size:12px;margin-top:32px}
"#;

/// Runs after the page is parsed. Marks the body when nothing threw, so a headless browser test
/// can tell the page rendered cleanly, and lets `c` on the keyboard hide clean endpoints.
const SCRIPT: &str = r#"
(function(){try{
var eps=document.querySelectorAll("section.endpoint");
document.body.dataset.endpoints=String(eps.length);
var box=document.getElementById("hide-clean");
if(box){box.addEventListener("change",function(){
eps.forEach(function(e){if(e.classList.contains("v-clean")){e.style.display=box.checked?"none":"";}});});}
document.body.dataset.ok="1";
}catch(e){document.body.dataset.error=String(e);}})();
"#;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Renders the whole report as one HTML document.
pub fn render_html(report: &Report) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = if report.experiment.is_empty() {
        "shadowdiff report".to_string()
    } else {
        format!("shadowdiff report: {}", report.experiment)
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body><main>\n",
        escape(&title)
    );
    summary(&mut out, report);
    if !report.endpoints.is_empty() {
        overview(&mut out, report);
    }
    for (i, e) in report.endpoints.iter().enumerate() {
        endpoint(&mut out, i, e);
    }
    let _ = write!(
        out,
        "<footer>Generated by shadowdiff {}. Verdicts: <span class=\"badge b-regression\">regression</span> \
         a field differs more often than noise explains; <span class=\"badge b-noise\">noise</span> \
         the difference is explained by A/A noise or a noise rule.</footer>\n\
         </main><script>{SCRIPT}</script></body></html>\n",
        escape(env!("CARGO_PKG_VERSION"))
    );
    out
}

fn summary(out: &mut String, report: &Report) {
    let name = if report.experiment.is_empty() {
        "(no data)"
    } else {
        &report.experiment
    };
    let _ = writeln!(
        out,
        "<h1>shadowdiff report: <span class=\"mono\">{}</span></h1>",
        escape(name)
    );
    match (&report.window.from, &report.window.to) {
        (Some(from), Some(to)) => {
            let _ = writeln!(
                out,
                "<p class=\"sub\">Window <time>{}</time> – <time>{}</time></p>",
                escape(from),
                escape(to)
            );
        }
        _ => out.push_str("<p class=\"sub\">No results in the window.</p>\n"),
    }
    let t = &report.totals;
    let regressions = report
        .endpoints
        .iter()
        .filter(|e| e.verdict == "regression")
        .count();
    let rate = pct(t.mismatched, t.compared);
    out.push_str("<div class=\"cards\" id=\"totals\">");
    let mut card = |label: &str, value: String, class: &str| {
        let _ = write!(
            out,
            "<div class=\"card {class}\"><div class=\"n\">{}</div><div class=\"l\">{}</div></div>",
            escape(&value),
            escape(label)
        );
    };
    card("exchanges", t.exchanges.to_string(), "");
    card("compared", t.compared.to_string(), "");
    card(
        "mismatched",
        format!("{} ({rate})", t.mismatched),
        if t.mismatched > 0 { "bad" } else { "" },
    );
    card(
        "candidate errors",
        t.errors.to_string(),
        if t.errors > 0 { "bad" } else { "" },
    );
    card(
        "blocked",
        t.blocked.to_string(),
        if t.blocked > 0 { "warn" } else { "" },
    );
    card("skipped", t.skipped.to_string(), "");
    card(
        "endpoints with regressions",
        format!("{regressions} / {}", report.endpoints.len()),
        if regressions > 0 { "bad" } else { "" },
    );
    out.push_str("</div>\n");
}

fn overview(out: &mut String, report: &Report) {
    out.push_str(
        "<h2>Endpoints</h2>\n<p class=\"sub\"><label><input type=\"checkbox\" id=\"hide-clean\"> \
         hide clean endpoints</label></p>\n<table id=\"endpoints\"><thead><tr><th>verdict</th>\
         <th>endpoint</th><th>candidate</th><th class=\"num\">compared</th>\
         <th class=\"num\">mismatched</th><th class=\"num\">rate</th><th class=\"num\">errors</th>\
         <th class=\"num\">blocked</th><th>latency</th><th>error rate</th></tr></thead><tbody>\n",
    );
    for (i, e) in report.endpoints.iter().enumerate() {
        let _ = writeln!(
            out,
            "<tr class=\"endpoint-row\"><td>{}</td><td><a href=\"#ep-{i}\" class=\"mono\">{} {}</a></td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            badge(&e.verdict),
            escape(&e.method),
            escape(&e.route),
            escape(&e.candidate),
            e.compared,
            e.mismatched,
            pct(e.mismatched, e.compared),
            e.errors,
            e.blocked,
            escape(&e.latency_verdict.verdict),
            escape(&e.error_rate.verdict)
        );
    }
    out.push_str("</tbody></table>\n");
}

fn endpoint(out: &mut String, i: usize, e: &EndpointReport) {
    let _ = write!(
        out,
        "<section class=\"endpoint v-{}\" id=\"ep-{i}\">\n<h2>{} <span class=\"mono\">{} {}</span>\
         <small class=\"sub\">candidate {}</small></h2>\n<p class=\"reason\">{}</p>\n",
        class_token(&e.verdict),
        badge(&e.verdict),
        escape(&e.method),
        escape(&e.route),
        escape(&e.candidate),
        escape(&e.verdict_reason)
    );
    let _ = writeln!(
        out,
        "<p>compared <b>{}</b> · mismatched <b>{}</b> ({}) · errors <b>{}</b> · blocked <b>{}</b> · \
         skipped <b>{}</b></p>",
        e.compared,
        e.mismatched,
        pct(e.mismatched, e.compared),
        e.errors,
        e.blocked,
        e.skipped
    );
    for warning in [e.saturation_warning(), e.host_busy_warning()]
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "<p class=\"warn\">{}</p>", escape(&warning));
    }
    if !e.fields.is_empty() {
        fields(out, &e.fields);
    }
    if !e.signatures.is_empty() {
        out.push_str("<h3>Top mismatch signatures</h3>\n");
        for s in &e.signatures {
            signature(out, s);
        }
    } else if !e.samples.is_empty() {
        out.push_str("<h3>Samples</h3>\n");
        for s in &e.samples {
            out.push_str("<div class=\"sig\">");
            sample(out, s);
            out.push_str("</div>\n");
        }
    }
    out.push_str("<div class=\"cols\">");
    if !e.status.is_empty() {
        out.push_str(
            "<div><h3>Status pairs</h3><table class=\"status\"><thead><tr><th class=\"num\">control</th>\
             <th class=\"num\">candidate</th><th class=\"num\">count</th></tr></thead><tbody>",
        );
        for s in &e.status {
            let _ = write!(
                out,
                "<tr{}><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                if s.control != s.candidate {
                    " class=\"st-diff\""
                } else {
                    ""
                },
                s.control,
                s.candidate,
                s.count
            );
        }
        out.push_str("</tbody></table></div>");
    }
    if e.compared > 0 {
        latency(out, e);
    }
    counts(out, "Candidate errors", &e.error_kinds);
    counts(out, "Blocked (not replayed)", &e.blocked_reasons);
    counts(out, "Side effects blocked", &e.side_effects);
    out.push_str("</div>\n</section>\n");
}

fn fields(out: &mut String, fields: &[FieldReport]) {
    out.push_str(
        "<h3>Differing fields</h3>\n<table class=\"fields\"><thead><tr><th>verdict</th><th>path</th>\
         <th>kind</th><th class=\"num\">count</th><th class=\"num\">noise</th><th>evidence</th><th>reason</th></tr>\
         </thead><tbody>\n",
    );
    for f in fields {
        let _ = writeln!(
            out,
            "<tr class=\"f-{}\"><td>{}</td><td class=\"path mono\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            class_token(&f.verdict),
            badge(&f.verdict),
            escape(&f.path),
            escape(&f.kind),
            f.count,
            f.noise_count,
            escape(&f.evidence.replace('_', " ")),
            escape(&f.reason)
        );
    }
    out.push_str("</tbody></table>\n");
}

fn signature(out: &mut String, s: &Signature) {
    let _ = write!(
        out,
        "<div class=\"sig\"><header><span class=\"mono\">{}</span> · <b>×{}</b> · {}</header>",
        escape(&s.fingerprint.chars().take(12).collect::<String>()),
        s.count,
        s.fields
            .iter()
            .map(|f| format!("<code>{}</code>", escape(f)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    sample(out, &s.sample);
    out.push_str("</div>\n");
}

/// One sample: a side-by-side table when structured differences are known, the text otherwise.
fn sample(out: &mut String, s: &Sample) {
    if !s.differences.is_empty() {
        let _ = write!(
            out,
            "<table class=\"sbs\"><thead><tr><th>path</th><th>kind</th><th class=\"ctl\">control</th>\
             <th class=\"cand\">candidate</th></tr></thead><tbody>"
        );
        for d in &s.differences {
            side_by_side_row(out, d);
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        "<details class=\"sample-text\"{}><summary>exchange <code>{}</code> as text</summary>\
         <pre class=\"diff\">{}</pre></details>",
        if s.differences.is_empty() {
            " open"
        } else {
            ""
        },
        escape(&s.exchange_id),
        escape(&s.diff)
    );
}

fn side_by_side_row(out: &mut String, d: &Difference) {
    let (ctl, cand) = highlight(d.control.as_deref(), d.candidate.as_deref());
    let _ = write!(
        out,
        "<tr><td class=\"path mono\">{}</td><td>{}</td><td class=\"v ctl mono\">{ctl}</td>\
         <td class=\"v cand mono\">{cand}</td></tr>",
        escape(&d.path),
        escape(d.kind.as_str())
    );
}

/// Marks the part of each value that differs: everything between the common prefix and suffix.
fn highlight(control: Option<&str>, candidate: Option<&str>) -> (String, String) {
    const ABSENT: &str = "<span class=\"absent\">(absent)</span>";
    match (control, candidate) {
        (Some(a), Some(b)) => {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let max_suffix = a.len().min(b.len()) - prefix;
            let suffix = a
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take(max_suffix)
                .take_while(|(x, y)| x == y)
                .count();
            let mark = |v: &[char]| {
                let s = |r: &[char]| escape(&r.iter().collect::<String>());
                let (head, rest) = v.split_at(prefix);
                let (mid, tail) = rest.split_at(rest.len() - suffix);
                if mid.is_empty() {
                    format!("{}{}", s(head), s(tail))
                } else {
                    format!("{}<mark>{}</mark>{}", s(head), s(mid), s(tail))
                }
            };
            (mark(&a), mark(&b))
        }
        (Some(a), None) => (format!("<mark>{}</mark>", escape(a)), ABSENT.to_string()),
        (None, Some(b)) => (ABSENT.to_string(), format!("<mark>{}</mark>", escape(b))),
        (None, None) => (ABSENT.to_string(), ABSENT.to_string()),
    }
}

fn latency(out: &mut String, e: &EndpointReport) {
    let l = &e.latency_ms;
    let max = [
        l.control_p50,
        l.control_p99,
        l.candidate_p50,
        l.candidate_p99,
    ]
    .into_iter()
    .fold(0.0f64, f64::max);
    out.push_str("<div><h3>Latency (ms)</h3><div class=\"lat\">");
    for (label, class, v) in [
        ("control p50", "ctl", l.control_p50),
        ("candidate p50", "cand", l.candidate_p50),
        ("control p99", "ctl", l.control_p99),
        ("candidate p99", "cand", l.candidate_p99),
    ] {
        let width = if max > 0.0 { v / max * 100.0 } else { 0.0 };
        let _ = write!(
            out,
            "<span>{label}</span><div class=\"bar {class}\" style=\"width:{width:.1}%\"></div>\
             <span class=\"num mono\">{v:.1}</span>"
        );
    }
    out.push_str("</div>");
    let v = &e.latency_verdict;
    if !v.verdict.is_empty() {
        let _ = write!(
            out,
            "<p class=\"verdict-{}\">Latency: <b>{}</b> ({})</p>",
            escape(&v.verdict),
            escape(&v.verdict),
            escape(&v.reason)
        );
    }
    let r = &e.error_rate;
    if !r.verdict.is_empty() {
        let _ = write!(
            out,
            "<p class=\"verdict-{}\">Error rate: <b>{}</b> ({})</p>",
            escape(&r.verdict),
            escape(&r.verdict),
            escape(&r.reason)
        );
    }
    out.push_str("</div>");
}

fn counts(out: &mut String, title: &str, counts: &[Count]) {
    if counts.is_empty() {
        return;
    }
    let _ = write!(out, "<div><h3>{}</h3><ul class=\"counts\">", escape(title));
    for c in counts {
        let _ = write!(
            out,
            "<li><code>{}</code> ×{}</li>",
            escape(&c.name),
            c.count
        );
    }
    out.push_str("</ul></div>");
}

fn badge(verdict: &str) -> String {
    format!(
        "<span class=\"badge b-{}\">{}</span>",
        class_token(verdict),
        escape(verdict)
    )
}

/// A verdict as a CSS class token: only known values, so traffic never reaches a class name.
fn class_token(verdict: &str) -> &'static str {
    match verdict {
        "regression" => "regression",
        "noisy" => "noisy",
        "noise" => "noise",
        "inconclusive" => "inconclusive",
        _ => "clean",
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{build_report, ReportQuery};
    use shadowdiff_model::{DiffKind, DiffRecord, Outcome, TargetRole, SCHEMA_VERSION};

    fn record(id: &str, route: &str, control: &str, candidate: &str) -> DiffRecord {
        let differences = vec![Difference {
            path: "body.name".into(),
            kind: DiffKind::Value,
            control: Some(control.into()),
            candidate: Some(candidate.into()),
        }];
        DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: id.into(),
            captured_at_ms: 1_763_805_600_000,
            experiment: "<exp>".into(),
            method: "GET".into(),
            route: route.into(),
            target: "v2".into(),
            role: TargetRole::Candidate,
            outcome: Outcome::Mismatch,
            control_status: Some(200),
            target_status: Some(500),
            control_latency_us: Some(2_000),
            target_latency_us: Some(9_000),
            fingerprint: shadowdiff_model::fingerprint(&differences),
            differences,
            noise: vec![],
            detail: None,
            notes: vec![],
            side_effects: vec!["POST http://x/<y>".into()],
        }
    }

    #[test]
    fn everything_from_traffic_is_escaped() {
        let records = vec![record(
            "1",
            "/a/<script>alert(1)</script>",
            "\"<b>Ann</b>\"",
            "'&Bob'",
        )];
        let html = render_html(&build_report(&records, &ReportQuery::default()));
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<b>Ann"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;exp&gt;"));
        assert!(html.contains("POST http://x/&lt;y&gt;"));
        assert_eq!(html.matches("<script>").count(), 1, "only our own script");
        assert!(
            !html.contains("src=") && !html.contains("<link"),
            "no external assets"
        );
    }

    #[test]
    fn side_by_side_marks_only_the_changed_part() {
        let (a, b) = highlight(Some("\"User 12\""), Some("\"User 13\""));
        assert_eq!(a, "&quot;User 1<mark>2</mark>&quot;");
        assert_eq!(b, "&quot;User 1<mark>3</mark>&quot;");
        let (a, b) = highlight(Some("abc"), None);
        assert_eq!(a, "<mark>abc</mark>");
        assert!(b.contains("absent"));
        // Repeated characters: prefix and suffix must not overlap.
        let (a, b) = highlight(Some("aa"), Some("aaa"));
        assert_eq!((a.as_str(), b.as_str()), ("aa", "aa<mark>a</mark>"));
    }

    #[test]
    fn empty_report_renders() {
        let html = render_html(&build_report(&[], &ReportQuery::default()));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("No results"));
    }
}
