//! The bench's results: medians, ratios and targets, printed as a Markdown table (what the
//! README's Performance section shows), and written as `bench.json` and a self-contained
//! `bench.html` with one bar chart per quantity (time, memory, bytes written).

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::measure::Usage;

/// Every sample of one measure.
pub(crate) struct Measure {
    pub(crate) id: &'static str,
    pub(crate) label: &'static str,
    /// The bytes it moves, for a throughput column (none for the no-op build).
    pub(crate) payload: Option<u64>,
    pub(crate) samples: Vec<Usage>,
}

impl Measure {
    pub(crate) fn new(id: &'static str, label: &'static str, payload: Option<u64>) -> Self {
        Self {
            id,
            label,
            payload,
            samples: Vec::new(),
        }
    }

    pub(crate) fn median(&self) -> Duration {
        median(self.samples.iter().map(|usage| usage.wall).collect())
    }

    fn min(&self) -> Duration {
        self.samples
            .iter()
            .map(|usage| usage.wall)
            .min()
            .unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.samples
            .iter()
            .map(|usage| usage.wall)
            .max()
            .unwrap_or_default()
    }

    /// The largest peak RSS seen in any run.
    pub(crate) fn peak_rss(&self) -> u64 {
        self.samples
            .iter()
            .map(|usage| usage.peak_rss)
            .max()
            .unwrap_or(0)
    }

    fn written(&self) -> u64 {
        median(self.samples.iter().map(|usage| usage.written).collect())
    }

    /// Whether it ran programs (and so has memory and writes to report).
    fn external(&self) -> bool {
        self.peak_rss() > 0
    }

    #[allow(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    fn throughput(&self) -> Option<f64> {
        let seconds = self.median().as_secs_f64();
        self.payload
            .filter(|_| seconds > 0.0)
            .map(|bytes| bytes as f64 / seconds / 1e6)
    }
}

fn median<T: Ord + Copy + Default>(mut values: Vec<T>) -> T {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// A target from issue 8 and whether this run meets it.
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) wanted: String,
    pub(crate) measured: String,
    pub(crate) holds: bool,
}

/// Everything a run found.
pub(crate) struct Results {
    /// A line about the image set, the build and the machine.
    pub(crate) context: Vec<(String, Value)>,
    pub(crate) measures: Vec<Measure>,
    pub(crate) targets: Vec<Target>,
    /// `--quick`: a smoke run whose numbers say nothing about the targets.
    pub(crate) quick: bool,
    /// The commit the bench ran on (`unknown` outside a git checkout).
    pub(crate) commit: String,
}

impl Results {
    pub(crate) fn measure(&self, id: &str) -> &Measure {
        self.measures
            .iter()
            .find(|measure| measure.id == id)
            .expect("a known measure")
    }

    /// Markdown: the measures, then the targets.
    pub(crate) fn table(&self) -> String {
        let mut text = String::new();
        let runs = self.measures.first().map_or(0, |m| m.samples.len());
        let _ = writeln!(
            text,
            "| measure ({runs} run{}) | median | min – max | MB/s | peak RSS | written |",
            if runs == 1 { "" } else { "s" }
        );
        text.push_str("|---|---:|---:|---:|---:|---:|\n");
        for measure in &self.measures {
            let throughput = measure
                .throughput()
                .map_or_else(|| "–".to_owned(), |rate| format!("{rate:.0}"));
            let (rss, written) = if measure.external() {
                (mib(measure.peak_rss()), mb(measure.written()))
            } else {
                ("–".to_owned(), "–".to_owned())
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} – {} | {throughput} | {rss} | {written} |",
                measure.label,
                seconds(measure.median()),
                seconds(measure.min()),
                seconds(measure.max()),
            );
        }
        text.push('\n');
        text.push_str("| target | wanted | measured | holds |\n|---|---|---|---|\n");
        for target in &self.targets {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} |",
                target.name,
                target.wanted,
                target.measured,
                if target.holds { "yes" } else { "**no**" }
            );
        }
        text
    }

    pub(crate) fn json(&self) -> Value {
        let context: serde_json::Map<String, Value> = self.context.iter().cloned().collect();
        let measures: Vec<Value> = self
            .measures
            .iter()
            .map(|measure| {
                json!({
                    "id": measure.id,
                    "label": measure.label,
                    "payload_bytes": measure.payload,
                    "median_seconds": measure.median().as_secs_f64(),
                    "min_seconds": measure.min().as_secs_f64(),
                    "max_seconds": measure.max().as_secs_f64(),
                    "megabytes_per_second": measure.throughput(),
                    "peak_rss_bytes": measure.external().then(|| measure.peak_rss()),
                    "written_bytes": measure.external().then(|| measure.written()),
                    "samples": measure.samples.iter().map(|usage| json!({
                        "seconds": usage.wall.as_secs_f64(),
                        "peak_rss_bytes": usage.peak_rss,
                        "written_bytes": usage.written,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|target| {
                json!({
                    "name": target.name,
                    "wanted": target.wanted,
                    "measured": target.measured,
                    "holds": target.holds,
                })
            })
            .collect();
        json!({ "context": context, "measures": measures, "targets": targets })
    }

    /// One page, no scripts or external files: the context, a bar chart per quantity, the
    /// targets.
    pub(crate) fn html(&self) -> String {
        let mut page = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>isobuild bench</title><style>\
             body{font-family:sans-serif;margin:2em;max-width:60em}\
             table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}\
             td.n{text-align:right}.no{color:#b00;font-weight:bold}\
             </style></head><body>\n<h1>isobuild bench</h1>\n",
        );
        let runs = self.measures.first().map_or(0, |m| m.samples.len());
        let _ = writeln!(
            page,
            "<p>Commit <code>{}</code>; {runs} run(s) of each measure.</p>",
            escape(&self.commit)
        );
        if self.quick {
            page.push_str(
                "<p class=\"no\">This is a <code>--quick</code> run: eight small images, one run \
                 each, usually a debug build. It shows that the bench works, not how fast isobuild \
                 is: the targets below apply to the full release run (<code>cargo xtask bench</code>), \
                 and are judged here only so that the page has the same shape.</p>\n",
            );
        }
        page.push_str(
            "<p>Legend: <span style=\"color:#2b6cb0\">&#9632;</span> isobuild, \
             <span style=\"color:#a0aec0\">&#9632;</span> the other tools and the floors (a plain \
             <code>cp</code>, <code>cp</code> + <code>sync</code>, sha256 in process). Units: wall \
             time in seconds (median of the runs), peak resident memory of the largest process in \
             MiB (2<sup>20</sup> bytes), bytes written to the page cache in MB (10<sup>6</sup> \
             bytes; a hard link writes nothing), throughput in MB/s.</p>\n<table>\n",
        );
        for (key, value) in &self.context {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(
                page,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(key),
                escape(&value)
            );
        }
        page.push_str("</table>\n");
        let time: Vec<(&str, f64)> = self
            .measures
            .iter()
            .map(|m| (m.label, m.median().as_secs_f64()))
            .collect();
        let external: Vec<&Measure> = self.measures.iter().filter(|m| m.external()).collect();
        #[allow(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
        let rss: Vec<(&str, f64)> = external
            .iter()
            .map(|m| (m.label, m.peak_rss() as f64 / 1_048_576.0))
            .collect();
        #[allow(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
        let written: Vec<(&str, f64)> = external
            .iter()
            .map(|m| (m.label, m.written() as f64 / 1e6))
            .collect();
        page.push_str(&bar_chart("Wall time, median (s)", &time, 3));
        page.push_str(&bar_chart("Peak RSS, largest process (MiB)", &rss, 1));
        page.push_str(&bar_chart("Bytes written, median (MB)", &written, 0));
        page.push_str(if self.quick {
            "<h2>Targets (of the full release run; not meaningful for this quick run)</h2>\n"
        } else {
            "<h2>Targets</h2>\n"
        });
        page.push_str(
            "<table>\n<tr><th>target</th><th>wanted</th><th>measured</th><th>holds</th></tr>\n",
        );
        for target in &self.targets {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
                escape(&target.name),
                escape(&target.wanted),
                escape(&target.measured),
                if target.holds { "" } else { " class=\"no\"" },
                if target.holds { "yes" } else { "no" }
            );
        }
        page.push_str("</table>\n</body></html>\n");
        page
    }
}

/// A horizontal bar chart as inline SVG.
fn bar_chart(title: &str, bars: &[(&str, f64)], decimals: usize) -> String {
    const LABEL: f64 = 330.0;
    const WIDTH: f64 = 420.0;
    const ROW: f64 = 24.0;
    let top = bars.iter().map(|(_, value)| *value).fold(0.0_f64, f64::max);
    #[allow(clippy::cast_precision_loss, reason = "a handful of bars")]
    let height = ROW * bars.len() as f64 + 10.0;
    let mut svg = format!(
        "<h2>{}</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         font-size=\"13\">\n",
        escape(title),
        LABEL + WIDTH + 90.0
    );
    for (row, (label, value)) in bars.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "a handful of bars")]
        let y = ROW * row as f64 + 5.0;
        let width = if top > 0.0 { value / top * WIDTH } else { 0.0 };
        let color = if label.starts_with("isobuild") {
            "#2b6cb0"
        } else {
            "#a0aec0"
        };
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{value:.decimals$}</text>",
            LABEL - 8.0,
            y + 15.0,
            escape(label),
            ROW - 6.0,
            LABEL + width + 6.0,
            y + 15.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `text` as XML (and HTML) character data or an attribute value.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn seconds(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

#[allow(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1_048_576.0)
}

#[allow(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
pub(crate) fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}
