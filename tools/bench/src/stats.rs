//! Summaries of samples and the figures the report is made of: one
//! [`Figure`] per measured quantity, with its target beside it, rendered as a
//! table for people and as JSON for machines.

use serde_json::{json, Value};

/// A distribution summarised: median and p99 are what the report quotes.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// None for no samples. p99 is the nearest-rank percentile, so with fewer
    /// than 100 samples it is the maximum.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
        Some(Summary {
            n,
            median,
            p99: sorted[rank - 1],
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// Which way a target points.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    AtMost,
    AtLeast,
}

/// A target from the brief: which statistic of the figure it bounds.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub bound: Bound,
    pub limit: f64,
    /// "median", "p99", "value" or "max".
    pub on: &'static str,
}

impl Target {
    pub fn at_most(limit: f64, on: &'static str) -> Self {
        Target {
            bound: Bound::AtMost,
            limit,
            on,
        }
    }

    pub fn at_least(limit: f64, on: &'static str) -> Self {
        Target {
            bound: Bound::AtLeast,
            limit,
            on,
        }
    }

    fn describe(&self, unit: &str) -> String {
        let op = match self.bound {
            Bound::AtMost => "≤",
            Bound::AtLeast => "≥",
        };
        format!("{} {op} {} {unit}", self.on, number(self.limit))
    }
}

/// One measured quantity.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable key for the JSON (`cli.jobs_list`).
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    /// A distribution, or a single value (`value`).
    pub summary: Option<Summary>,
    pub value: Option<f64>,
    pub targets: Vec<Target>,
    pub note: String,
}

impl Figure {
    pub fn distribution(key: &str, label: &str, unit: &'static str, samples: &[f64]) -> Self {
        Figure {
            key: key.into(),
            label: label.into(),
            unit,
            summary: Summary::of(samples),
            value: None,
            targets: Vec::new(),
            note: String::new(),
        }
    }

    pub fn value(key: &str, label: &str, unit: &'static str, value: f64) -> Self {
        Figure {
            key: key.into(),
            label: label.into(),
            unit,
            summary: None,
            value: Some(value),
            targets: Vec::new(),
            note: String::new(),
        }
    }

    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    fn stat(&self, on: &str) -> Option<f64> {
        match (on, &self.summary) {
            ("median", Some(s)) => Some(s.median),
            ("p99", Some(s)) => Some(s.p99),
            ("max", Some(s)) => Some(s.max),
            ("min", Some(s)) => Some(s.min),
            ("value", _) => self.value,
            _ => None,
        }
    }

    /// None without targets (or without data); else whether all are met.
    pub fn met(&self) -> Option<bool> {
        if self.targets.is_empty() {
            return None;
        }
        let mut all = true;
        for t in &self.targets {
            let v = self.stat(t.on)?;
            all &= match t.bound {
                Bound::AtMost => v <= t.limit,
                Bound::AtLeast => v >= t.limit,
            };
        }
        Some(all)
    }

    pub fn to_json(&self) -> Value {
        let summary = self.summary.map(
            |s| json!({"n": s.n, "median": s.median, "p99": s.p99, "min": s.min, "max": s.max}),
        );
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "statistic": t.on,
                    "bound": match t.bound { Bound::AtMost => "at_most", Bound::AtLeast => "at_least" },
                    "limit": t.limit,
                })
            })
            .collect();
        json!({
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "value": self.value,
            "summary": summary,
            "targets": targets,
            "met": self.met(),
            "note": self.note,
        })
    }
}

/// A number with as many decimals as its size deserves.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The human table: one row per figure.
pub fn table(figures: &[Figure]) -> String {
    let header = [
        "figure", "unit", "median", "p99", "min", "max", "n", "target", "met",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for f in figures {
        let (median, p99, min, max, n) = match (&f.summary, f.value) {
            (Some(s), _) => (
                number(s.median),
                number(s.p99),
                number(s.min),
                number(s.max),
                s.n.to_string(),
            ),
            (None, Some(v)) => (number(v), "".into(), "".into(), "".into(), "".into()),
            (None, None) => ("n/a".into(), "".into(), "".into(), "".into(), "0".into()),
        };
        let target = f
            .targets
            .iter()
            .map(|t| t.describe(f.unit))
            .collect::<Vec<_>>()
            .join(", ");
        let met = match f.met() {
            None => "",
            Some(true) => "met",
            Some(false) => "MISSED",
        };
        rows.push(vec![
            f.label.clone(),
            f.unit.to_string(),
            median,
            p99,
            min,
            max,
            n,
            target,
            met.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = widths[c] - cell.chars().count();
                // Text columns left, numbers right.
                if c == 0 || c == 1 || c == 7 || c == 8 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99_by_nearest_rank() {
        let samples: Vec<f64> = (1..=200).map(f64::from).collect();
        let s = Summary::of(&samples).expect("samples");
        assert_eq!(s.median, 100.5);
        assert_eq!(s.p99, 198.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 200.0);
    }
}
