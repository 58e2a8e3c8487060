//! The one table every section adds its rows to, printed aligned for a
//! terminal and as markdown for `BENCHMARKS.md`.

use std::time::Duration;

/// One measured case.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    /// "1 Serializers", "2 InProcess", ...
    pub(crate) section: String,
    /// What ran.
    pub(crate) case: String,
    /// How many tasks or messages.
    pub(crate) n: Option<usize>,
    /// The rate, with its unit ("tasks/s", "msg/s", "MB/s").
    pub(crate) rate: Option<(f64, &'static str)>,
    /// Median submit-to-complete latency.
    pub(crate) p50: Option<Duration>,
    /// 99th percentile submit-to-complete latency.
    pub(crate) p99: Option<Duration>,
    /// The rate as a percentage of the raw baseline's.
    pub(crate) vs_raw: Option<f64>,
    /// Memory, round trips, failures, caveats.
    pub(crate) notes: String,
}

impl Row {
    /// A row of `section` for `case`.
    pub(crate) fn new(section: &str, case: impl Into<String>) -> Self {
        Self {
            section: section.to_owned(),
            case: case.into(),
            ..Self::default()
        }
    }

    fn cells(&self) -> [String; 8] {
        [
            self.section.clone(),
            self.case.clone(),
            self.n.map(|n| thousands(n as f64)).unwrap_or_default(),
            self.rate
                .map(|(rate, unit)| {
                    if rate >= 100.0 {
                        format!("{} {unit}", thousands(rate))
                    } else {
                        format!("{rate:.1} {unit}")
                    }
                })
                .unwrap_or_default(),
            self.p50.map(millis).unwrap_or_default(),
            self.p99.map(millis).unwrap_or_default(),
            self.vs_raw.map(|pct| format!("{pct:.0} %")).unwrap_or_default(),
            self.notes.clone(),
        ]
    }
}

const HEADERS: [&str; 8] = ["Section", "Case", "N", "Rate", "p50", "p99", "vs raw", "Notes"];

/// Every row of the run, in order.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds a row and shows it at once on stderr (the run is long).
    pub(crate) fn push(&mut self, row: Row) {
        let cells = row.cells();
        eprintln!(
            "  -> {}",
            cells[1..]
                .iter()
                .filter(|c| !c.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        );
        self.rows.push(row);
    }

    /// The table with aligned columns.
    pub(crate) fn text(&self) -> String {
        let rows: Vec<[String; 8]> = self.rows.iter().map(Row::cells).collect();
        let mut widths = HEADERS.map(str::len);
        for cells in &rows {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                let pad = width - cell.chars().count();
                // Numbers right-aligned, words left-aligned.
                if (2..=6).contains(&i) {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                }
                out.push_str("  ");
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(&HEADERS.map(str::to_owned));
        out.push_str(&line(&widths.map(|w| "-".repeat(w))));
        for cells in &rows {
            out.push_str(&line(cells));
        }
        out
    }

    /// The table as markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", HEADERS.join(" | "));
        out.push_str("|---|---|--:|--:|--:|--:|--:|---|\n");
        for row in &self.rows {
            let cells = row.cells().map(|c| c.replace('|', "\\|"));
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }
}

/// A duration in milliseconds: three decimals below 10 ms.
fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// A number rounded, with thousands separated by commas.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn both_renderings_hold_every_row() {
        let mut table = Table::default();
        let mut row = Row::new("2 InProcess", "dtask | 3-step");
        row.n = Some(1000);
        row.rate = Some((150_000.0, "tasks/s"));
        row.p99 = Some(Duration::from_micros(800));
        table.rows.push(row);
        assert!(table.text().contains("150,000 tasks/s"));
        assert!(table.text().contains("0.800 ms"));
        assert!(table.markdown().contains("| 2 InProcess | dtask \\| 3-step | 1,000 |"));
    }
}
