//! The one results table both the load bench and `portcullis bench` print: requests per second,
//! latency percentiles, and each row's ratio to the row it is judged against, with the target
//! that ratio must meet. The same rows serialise to JSON for machines.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One measured (or skipped) line of the table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// What was measured, e.g. `all`, `valid`, `portcullis`.
    pub name: String,
    /// Requests (or operations, for sign-ins and hashes) per second; `None` when skipped.
    pub rps: Option<f64>,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile latency in milliseconds.
    pub p999_ms: Option<f64>,
    /// The row this one is compared with, by name.
    pub baseline: Option<String>,
    /// `rps / baseline rps`.
    pub ratio: Option<f64>,
    /// The ratio this row must reach, e.g. `>= 0.95`.
    pub target: Option<String>,
    /// Whether `ratio` reached `target`; `None` when there is no target or no ratio.
    pub met: Option<bool>,
    /// Status mix, errors, why a row was skipped, or what a value means.
    pub note: String,
    /// CPU time the server(s) serving the row spent per request, in microseconds: their user
    /// plus system time over the measured runs divided by the requests completed, summed over
    /// the servers when a row has more than one (each one's share is in `figures`). `None`
    /// (and left out of the JSON) when the row measured no server's CPU.
    #[serde(rename = "cpu_us_per_request", skip_serializing_if = "Option::is_none")]
    pub cpu_us: Option<f64>,
    /// Further named numbers of the row, for machines: e.g. `cpu_us_per_request:nginx`, or
    /// `rss_bytes_per_idle_connection`. Left out of the JSON when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
}

impl Row {
    /// An empty row named `name`: no numbers, no comparison, no note.
    pub fn new(name: impl Into<String>) -> Row {
        Row {
            name: name.into(),
            ..Row::default()
        }
    }

    /// A row that could not be measured here, saying why.
    pub fn skipped(name: impl Into<String>, why: impl Into<String>) -> Row {
        Row {
            note: why.into(),
            ..Row::new(name)
        }
    }

    /// Fills `ratio` (and `met` against `min`, when given) from the baseline's rate.
    pub fn against(&mut self, baseline: &Row, min: Option<f64>) {
        self.baseline = Some(baseline.name.clone());
        self.ratio = match (self.rps, baseline.rps) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        if let Some(min) = min {
            self.target = Some(format!(">= {min}"));
            self.met = self.ratio.map(|r| r >= min);
        }
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// The table as aligned text, one row per line, with a header. The `cpu us/req` column is
/// there only when some row measured CPU time (the load bench), not for `portcullis bench`.
pub fn render(rows: &[Row]) -> String {
    let with_cpu = rows.iter().any(|r| r.cpu_us.is_some());
    let mut header = vec!["row", "req/s", "p50 ms", "p99 ms", "p99.9 ms"];
    if with_cpu {
        header.push("cpu us/req");
    }
    header.extend(["ratio", "vs", "target", "notes"]);
    // The numeric columns: after the name, up to and including the ratio.
    let numeric_end = header.len() - 4;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.name.clone(),
                num(r.rps, 0),
                num(r.p50_ms, 3),
                num(r.p99_ms, 3),
                num(r.p999_ms, 3),
            ];
            if with_cpu {
                c.push(num(r.cpu_us, 1));
            }
            c.extend([
                num(r.ratio, 2),
                r.baseline.clone().unwrap_or_default(),
                match (&r.target, r.met) {
                    (Some(t), Some(true)) => format!("{t} ok"),
                    (Some(t), Some(false)) => format!("{t} MISSED"),
                    (Some(t), None) => t.clone(),
                    (None, _) => String::new(),
                },
                r.note.clone(),
            ]);
            c
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    let last = header.len() - 1;
    let mut out = String::new();
    let line = |out: &mut String, c: &[&str]| {
        for (i, (v, w)) in c.iter().zip(widths.iter()).enumerate() {
            // Text columns left-aligned, numbers right-aligned; the last column unpadded.
            let numeric = (1..=numeric_end).contains(&i);
            let _ = match (i == last, numeric) {
                (true, _) => write!(out, "{v}"),
                (false, true) => write!(out, "{v:>w$}  "),
                (false, false) => write!(out, "{v:<w$}  "),
            };
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, &header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(
        &mut out,
        &rule.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for c in &cells {
        line(&mut out, &c.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// The same rows as JSON, with free-form context (machine, settings) beside them.
pub fn to_json(rows: &[Row], context: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "context": context, "rows": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_target_are_judged_against_the_baseline() {
        let base = Row {
            rps: Some(1000.0),
            ..Row::new("plain")
        };
        let mut r = Row {
            rps: Some(960.0),
            ..Row::new("gateway")
        };
        r.against(&base, Some(0.95));
        assert_eq!(r.met, Some(true));
        let text = render(&[base, r, Row::skipped("forward-auth", "not available")]);
        assert!(text.contains(">= 0.95 ok"), "{text}");
        assert!(text.contains("not available"), "{text}");
        assert!(!text.contains("cpu us/req"), "{text}");
    }

    #[test]
    fn cpu_per_request_gets_a_column_and_a_json_field_only_when_measured() {
        let mut r = Row {
            rps: Some(1000.0),
            cpu_us: Some(12.34),
            ..Row::new("gateway")
        };
        r.figures.insert("cpu_us_per_request:nginx".into(), 5.0);
        let text = render(&[r.clone(), Row::new("no cpu")]);
        let header = text.lines().next().unwrap();
        assert!(header.contains("cpu us/req"), "{text}");
        let line = text.lines().nth(2).unwrap();
        assert!(line.contains(" 12.3 "), "{text}");
        let v = to_json(&[r, Row::new("no cpu")], serde_json::json!({}));
        assert_eq!(v["rows"][0]["cpu_us_per_request"], 12.34);
        assert_eq!(v["rows"][0]["figures"]["cpu_us_per_request:nginx"], 5.0);
        assert!(v["rows"][1].get("cpu_us_per_request").is_none(), "{v}");
        assert!(v["rows"][1].get("figures").is_none(), "{v}");
    }
}
