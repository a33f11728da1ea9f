//! The result table: one row per metric, the tokio / switchboard / seed figures side by
//! side, switchboard's ratios to them, the goal and whether it is met; then the notes.

use std::fmt;

/// How a metric's numbers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A rate; the label is the unit, e.g. "msgs/s".
    Rate(&'static str),
    /// MB/s (10^6 bytes).
    MegabytesPerSec,
    /// A duration in seconds, shown as µs / ms / s.
    Seconds,
    /// Memory in KiB, shown as MiB.
    Kib,
    /// 1.0 = yes, 0.0 = no.
    YesNo,
    /// A count; the label names what is counted, e.g. "errors".
    Count(&'static str),
    /// A share in percent (1.0 = 1 %).
    Percent,
}

/// A target for switchboard's figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// switchboard / baseline column ≥ x (the baseline is tokio unless the row says otherwise).
    RatioAtLeast(f64),
    /// switchboard / baseline column ≤ x (latencies).
    RatioAtMost(f64),
    /// switchboard / seed ≥ x.
    SeedRatioAtLeast(f64),
    /// switchboard ≥ x, in the metric's unit.
    AtLeast(f64),
    /// switchboard ≤ x, in the metric's unit.
    AtMost(f64),
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub scenario: &'static str,
    /// What is measured.
    pub metric: String,
    /// How to print the figures.
    pub unit: Unit,
    /// The tokio baseline's figure (`None`: failed or not run); or, for rows compared
    /// against something else (see `baseline`), that figure.
    pub tokio: Option<f64>,
    /// What the baseline column holds in this row: "tokio", or e.g. "quiet" when
    /// switchboard is compared with itself under other conditions.
    pub baseline: &'static str,
    /// switchboard's figure.
    pub switchboard: Option<f64>,
    /// The seed Python server's figure, where there is one.
    pub seed: Option<f64>,
    /// Targets for switchboard (all must hold).
    pub goals: Vec<Goal>,
}

impl Row {
    /// A row without a seed figure or goals.
    pub fn new(scenario: &'static str, metric: impl Into<String>, unit: Unit, tokio: Option<f64>, switchboard: Option<f64>) -> Row {
        Row { scenario, metric: metric.into(), unit, tokio, switchboard, seed: None, baseline: "tokio", goals: Vec::new() }
    }

    /// With a baseline column that holds `label`'s figure rather than tokio's (goals read
    /// "≤ 2× label"); the metric text and a note should say what it is.
    pub fn against(mut self, label: &'static str) -> Row {
        self.baseline = label;
        self
    }

    /// With the seed's figure.
    pub fn seed(mut self, seed: Option<f64>) -> Row {
        self.seed = seed;
        self
    }

    /// With a goal.
    pub fn goal(mut self, goal: Goal) -> Row {
        self.goals.push(goal);
        self
    }

    fn ratio(&self, base: Option<f64>) -> Option<f64> {
        match (self.switchboard, base) {
            (Some(s), Some(b)) if b > 0.0 && self.unit != Unit::YesNo => Some(s / b),
            _ => None,
        }
    }

    /// `Some(true)` when every goal holds, `None` when a figure is missing or no goal.
    fn met(&self) -> Option<bool> {
        if self.goals.is_empty() {
            return None;
        }
        let mut all = true;
        for goal in &self.goals {
            all &= match *goal {
                Goal::RatioAtLeast(x) => self.ratio(self.tokio)? >= x,
                Goal::RatioAtMost(x) => self.ratio(self.tokio)? <= x,
                Goal::SeedRatioAtLeast(x) => self.ratio(self.seed)? >= x,
                Goal::AtLeast(x) => self.switchboard? >= x,
                Goal::AtMost(x) => self.switchboard? <= x,
            };
        }
        Some(all)
    }

    fn goal_text(&self) -> String {
        let texts: Vec<String> = self
            .goals
            .iter()
            .map(|g| match *g {
                Goal::RatioAtLeast(x) => format!("≥ {x}× {}", self.baseline),
                Goal::RatioAtMost(x) => format!("≤ {x}× {}", self.baseline),
                Goal::SeedRatioAtLeast(x) => format!("≥ {x}× seed"),
                Goal::AtLeast(x) if self.unit == Unit::YesNo && x == 1.0 => "yes".into(),
                Goal::AtLeast(x) => format!("≥ {}", figure(self.unit, x)),
                Goal::AtMost(x) => format!("≤ {}", figure(self.unit, x)),
            })
            .collect();
        if texts.is_empty() { "–".into() } else { texts.join(", ") }
    }
}

/// The whole report: a heading, the rows, the notes.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines above the table (machine, run settings).
    pub heading: Vec<String>,
    /// The table rows, in scenario order.
    pub rows: Vec<Row>,
    /// Anything that went wrong or deserves a look, one line each.
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a note (and shows it on stderr at once).
    pub fn note(&mut self, note: String) {
        eprintln!("bench: note: {note}");
        self.notes.push(note);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.heading {
            writeln!(f, "{line}")?;
        }
        writeln!(f)?;
        writeln!(f, "| scenario | metric | tokio | switchboard | sb/tokio | python seed | sb/seed | goal | met |")?;
        writeln!(f, "|---|---|--:|--:|--:|--:|--:|---|---|")?;
        let cell = |v: Option<f64>, unit: Unit| v.map_or("–".to_string(), |v| figure(unit, v));
        let times = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.2}×"));
        for row in &self.rows {
            let met = match row.met() {
                None if row.goals.is_empty() => "",
                None => "?",
                Some(true) => "yes",
                Some(false) => "**no**",
            };
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {met} |",
                row.scenario,
                row.metric,
                cell(row.tokio, row.unit),
                cell(row.switchboard, row.unit),
                times(row.ratio(row.tokio)),
                cell(row.seed, row.unit),
                times(row.ratio(row.seed)),
                row.goal_text(),
            )?;
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            writeln!(f, "Notes:")?;
            for note in &self.notes {
                writeln!(f, "- {note}")?;
            }
        }
        Ok(())
    }
}

/// The spread of several runs' reports: for every row, the min / median / max of its
/// ratio to its baseline (or of its figure, for rows without one), and in how many of
/// the runs its goals were met. A goal counts as met only if it was met in every run.
pub struct Spread<'a>(pub &'a [Report]);

impl fmt::Display for Spread<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs = self.0.len();
        writeln!(f, "## Spread over {runs} runs\n")?;
        writeln!(f, "| scenario | metric | min | median | max | goal | met in |")?;
        writeln!(f, "|---|---|--:|--:|--:|---|---|")?;
        let Some(first) = self.0.first() else { return Ok(()) };
        for row in &first.rows {
            let same: Vec<&Row> =
                self.0.iter().filter_map(|r| r.rows.iter().find(|o| o.scenario == row.scenario && o.metric == row.metric)).collect();
            let ratios: Vec<f64> = same.iter().filter_map(|r| r.ratio(r.tokio)).collect();
            let (values, show): (Vec<f64>, Box<dyn Fn(f64) -> String>) = if ratios.len() == same.len() && !ratios.is_empty() {
                (ratios, Box::new(|r| format!("{r:.2}×")))
            } else {
                let unit = row.unit;
                (same.iter().filter_map(|r| r.switchboard).collect(), Box::new(move |v| figure(unit, v)))
            };
            let spread = min_median_max(values);
            let cells =
                spread.map_or(["–".to_string(), "–".to_string(), "–".to_string()], |(lo, mid, hi)| [show(lo), show(mid), show(hi)]);
            let met = same.iter().filter(|r| r.met() == Some(true)).count();
            let met = if row.goals.is_empty() {
                String::new()
            } else if met == runs {
                format!("{met} of {runs}: yes")
            } else {
                format!("{met} of {runs}: **no**")
            };
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {met} |",
                row.scenario,
                row.metric,
                cells[0],
                cells[1],
                cells[2],
                row.goal_text()
            )?;
        }
        Ok(())
    }
}

/// The smallest, middle (the lower of the two middles for an even count) and largest.
fn min_median_max(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let (lo, hi) = (*values.first()?, *values.last()?);
    Some((lo, values[(values.len() - 1) / 2], hi))
}

/// A figure in its unit.
pub fn figure(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Rate(label) => format!("{} {label}", thousands(v)),
        Unit::MegabytesPerSec => format!("{} MB/s", thousands(v)),
        Unit::Seconds if v < 1e-3 => format!("{:.0} µs", v * 1e6),
        Unit::Seconds if v < 1.0 => format!("{:.2} ms", v * 1e3),
        Unit::Seconds => format!("{v:.2} s"),
        Unit::Kib if v < 10.0 * 1024.0 => format!("{v:.1} KiB"),
        Unit::Kib => format!("{:.0} MiB", v / 1024.0),
        Unit::YesNo if v >= 1.0 => "yes".into(),
        Unit::YesNo => "no".into(),
        Unit::Count(label) => format!("{} {label}", thousands(v)),
        Unit::Percent => format!("{v:.3} %"),
    }
}

/// `v` rounded, with thousands separators.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(figure(Unit::Seconds, 0.000_182), "182 µs");
        assert_eq!(figure(Unit::Seconds, 0.0123), "12.30 ms");
        assert_eq!(figure(Unit::Kib, 54.84), "54.8 KiB");
        assert_eq!(figure(Unit::Kib, 20480.0), "20 MiB");
    }

    #[test]
    fn goals_compare_switchboard_to_the_baselines() {
        let row = Row::new("rtt", "msgs/s", Unit::Rate("msgs/s"), Some(100.0), Some(90.0)).goal(Goal::RatioAtLeast(0.85));
        assert_eq!(row.met(), Some(true));
        let row = Row::new("rtt", "p99", Unit::Seconds, Some(1.0), Some(2.0)).goal(Goal::RatioAtMost(1.5));
        assert_eq!(row.met(), Some(false));
        let row = Row::new("getfile", "MB/s", Unit::MegabytesPerSec, Some(1.0), None).goal(Goal::AtLeast(1000.0));
        assert_eq!(row.met(), None);
        let text = Report { rows: vec![row], ..Default::default() }.to_string();
        assert!(text.contains("| getfile | MB/s | 1 MB/s | – | – | – | – | ≥ 1,000 MB/s | ? |"), "{text}");
        let row = Row::new("faults", "p99", Unit::Seconds, Some(0.001), Some(0.0015)).against("quiet").goal(Goal::RatioAtMost(2.0));
        assert_eq!(row.met(), Some(true));
        assert_eq!(row.goal_text(), "≤ 2× quiet");
        let row = Row::new("faults", "errors", Unit::Count("errors"), Some(0.0), Some(0.0)).goal(Goal::AtMost(0.0));
        assert_eq!((row.met(), row.ratio(row.tokio), row.goal_text()), (Some(true), None, "≤ 0 errors".to_string()));
    }

    #[test]
    fn a_goal_is_met_over_repeats_only_if_met_in_every_run() {
        let run = |tokio: f64, sb: f64| Report {
            rows: vec![Row::new("rtt", "msgs/s", Unit::Rate("msgs/s"), Some(tokio), Some(sb)).goal(Goal::RatioAtLeast(0.9))],
            ..Default::default()
        };
        let reports = [run(100.0, 95.0), run(100.0, 85.0), run(100.0, 92.0)];
        let table = Spread(&reports).to_string();
        assert!(table.contains("| rtt | msgs/s | 0.85× | 0.92× | 0.95× | ≥ 0.9× tokio | 2 of 3: **no** |"), "{table}");
        assert_eq!(min_median_max(vec![3.0, 1.0, 2.0, 4.0]), Some((1.0, 2.0, 4.0)));
    }
}
