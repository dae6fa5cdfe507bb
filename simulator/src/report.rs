//! Output: terminal tables, time-series CSV, summary JSON and a self-contained HTML report
//! with SVG charts drawn by plotters. The terminal and the HTML report show the same
//! figures: means with 95% intervals when there are several seeds.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::metrics::{GLOSSARY, METRICS, Metric, Sample, Summary, Unit};

/// The runs of one policy (or grid point): every seed's summary, and the time series of
/// the first seed for the charts.
#[derive(Clone, Debug)]
pub struct RunGroup {
    /// Policy (or grid point) label.
    pub label: String,
    /// One summary per seed.
    pub summaries: Vec<Summary>,
    /// The first seed's time series.
    pub samples: Vec<Sample>,
}

/// [`pct`], or n/a for a figure that does not exist.
pub fn pct_or_na(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), pct)
}

/// A fraction as a percentage, the same way everywhere: one decimal; more (up to three)
/// only where one would round a value below 100% up to 100.0%, which readers take for
/// "all".
pub fn pct(x: f64) -> String {
    let p = 100.0 * x;
    if p.abs() < 0.05 {
        // Also the rounding noise of float sums (1 − cost / baseline for `dedicated`).
        return "0.0%".to_owned();
    }
    for digits in 1..=3 {
        let s = format!("{p:.digits$}");
        let shown: f64 = s.parse().unwrap_or(p);
        if p >= 100.0 || shown < 100.0 {
            return format!("{s}%");
        }
    }
    ">99.999%".to_owned()
}

/// A value in its unit, for people: `98.7%`, `12.34 USD/month`, `233 s`, `1.017`.
pub fn fmt_value(x: f64, unit: Unit, currency: &str) -> String {
    match unit {
        Unit::Percent => pct(x),
        Unit::PerHour => format!("{x:.4} {currency}/h"),
        Unit::PerMonth => format!("{x:.2} {currency}/month"),
        Unit::Money => format!("{x:.2} {currency}"),
        Unit::Seconds => format!("{} s", fmt_num(x)),
        Unit::Ratio => format!("{x:.3}"),
        Unit::Number => fmt_num(x),
    }
}

/// A value and its 95% half-width in its unit, compactly: `118.3 ±11.1`, `69.0% ±0.4`.
fn fmt_ci(m: f64, h: f64, unit: Unit) -> String {
    if unit == Unit::Percent {
        return if h > 0.0 {
            format!("{} ±{}", pct(m), pct(h))
        } else {
            pct(m)
        };
    }
    let (m, h, suffix) = match unit {
        Unit::Percent => (100.0 * m, 100.0 * h, "%"),
        _ => (m, h, ""),
    };
    let digits = match unit {
        Unit::Ratio => 3,
        Unit::Percent | Unit::Seconds => 1,
        Unit::PerHour => 4,
        Unit::PerMonth | Unit::Money => 2,
        Unit::Number => {
            if m.abs() < 100.0 && m.fract() != 0.0 {
                2
            } else {
                1
            }
        }
    };
    if h > 0.0 {
        format!("{m:.digits$}{suffix} ±{h:.digits$}{suffix}")
    } else {
        format!("{m:.digits$}{suffix}")
    }
}

/// Formats a plain number compactly.
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// What a reader must know first when claims were not all served.
pub fn service_warning(s: &Summary) -> Option<String> {
    if s.all_served() {
        return None;
    }
    let wait = match s.waits.measured(s.waits.p95_s) {
        Some(p95) => format!("p95 wait of the served {} s", fmt_num(p95)),
        None => "no claim that arrived after the warm-up was served".to_owned(),
    };
    Some(format!(
        "NOT ALL CLAIMS WERE SERVED: {} of claim-hours served; {} claims left without \
         ever being served; {:.1} claims waiting on average, {} at the end; {wait}. \
         Costs, savings and packing below cover only what was served.",
        pct_or_na(s.served_fraction),
        s.rejections,
        s.claims_waiting_mean,
        s.pending_at_end,
    ))
}

/// A run's results as one table: metric, value.
pub fn summary_table(s: &Summary) -> String {
    let mut out = String::new();
    let head = format!(
        "scenario {}  policy {}  seed {}  {} simulated ({} measured)",
        s.scenario,
        s.policy,
        s.seed,
        fmt_hours(s.duration_h),
        fmt_hours(s.measured_h)
    );
    if head.chars().count() > 96 {
        let _ = writeln!(out, "{}", wrap(&head, 96));
    } else {
        let _ = writeln!(out, "{head}");
    }
    if let Some(w) = service_warning(s) {
        let _ = writeln!(out, "{}", wrap(&w, 96));
    } else {
        let after = if s.measured_h < s.duration_h {
            " arriving after the warm-up"
        } else {
            ""
        };
        let line = match s.served_fraction {
            Some(f) => format!(
                "served {} of claim-hours; {} of {} claims{after} left before they were served",
                pct(f),
                s.rejections,
                s.arrivals_measured
            ),
            None => "no claim was live in the measured period: nothing to serve".to_owned(),
        };
        let _ = writeln!(out, "{}", wrap(&line, 96));
    }
    for note in &s.notes {
        let _ = writeln!(out, "{}", wrap(&format!("note: {note}"), 96));
    }
    let _ = writeln!(
        out,
        "claims: {} arrived, {} left, {} waiting at the end",
        s.arrivals, s.departures, s.pending_at_end
    );
    let w = METRICS.iter().map(|m| m.0.len()).max().unwrap_or(0);
    for (name, unit, get) in METRICS {
        let v = get(s).map_or_else(|| "n/a".to_owned(), |x| fmt_value(x, *unit, &s.currency));
        let _ = writeln!(out, "  {name:<w$}  {v:>20}");
    }
    if !s.pending_reasons.is_empty() {
        let _ = writeln!(out, "{}", wrap(&waited_because(s), 96));
    }
    if s.tenants.len() > 1 {
        let _ = writeln!(
            out,
            "  {:<16} {:>6} {:>8} {:>14} {:>10}",
            "tenant", "weight", "served", "listener share", "fair share"
        );
        for (name, t) in &s.tenants {
            // A tenant with no claim live in the measured period was not served 100%: it
            // asked for nothing.
            let served = pct_or_na(t.served_fraction);
            let _ = writeln!(
                out,
                "  {:<16} {:>6} {:>8} {:>14} {:>10}",
                truncate(name, 16),
                t.weight,
                served,
                pct_or_na(t.listener_share),
                pct_or_na(t.fair_share)
            );
        }
    }
    out
}

/// The line saying why claims waited: per reason, how many claims waited for it and how
/// many times a claim was told so (a claim is told again when its reason changes).
fn waited_because(s: &Summary) -> String {
    let reasons: Vec<String> = s
        .pending_reasons
        .iter()
        .map(|(k, times)| {
            let claims = s.claims_waited.get(k).copied().unwrap_or(0);
            let noun = if claims == 1 { "claim" } else { "claims" };
            format!("{}: {claims} {noun} ({times}×)", reason_words(k))
        })
        .collect();
    let when = if s.measured_h < s.duration_h {
        " after the warm-up"
    } else {
        ""
    };
    format!(
        "  told to wait{when}, because (claims, times told): {}",
        reasons.join("; ")
    )
}

/// A span of hours to the second, in hours, minutes and seconds (`570m` is "9 h 30 min",
/// `45s` is "45 s", `20d` is "480 h"): a header rounded to whole hours said a 30-minute
/// trace had "0 h measured".
pub fn fmt_hours(h: f64) -> String {
    let total = (h * 3600.0).round().max(0.0) as u64;
    let (hours, min, sec) = (total / 3600, total % 3600 / 60, total % 60);
    let parts: Vec<String> = [(hours, "h"), (min, "min"), (sec, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if parts.is_empty() {
        if h > 0.0 { "under 1 s" } else { "0 h" }.to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod hours_tests {
    use super::fmt_hours;

    #[test]
    fn hours_are_written_to_the_second() {
        assert_eq!(fmt_hours(480.0), "480 h");
        assert_eq!(fmt_hours(9.5), "9 h 30 min");
        assert_eq!(fmt_hours(0.5), "30 min");
        assert_eq!(fmt_hours(45.0 / 3600.0), "45 s");
        assert_eq!(fmt_hours(1.0 + 2.0 / 60.0 + 3.0 / 3600.0), "1 h 2 min 3 s");
        assert_eq!(fmt_hours(0.0), "0 h");
        assert_eq!(fmt_hours(0.1 / 3600.0), "under 1 s");
    }
}

/// A pending reason's name in words.
pub fn reason_words(name: &str) -> &'static str {
    match name {
        "WaitingForCapacity" => "capacity on its way (LBs provisioning or being deleted)",
        "PortConflict" => "every LB with room uses one of its fixed ports, budget spent",
        "QuotaExceeded" => "its tenant's quota",
        "BudgetExhausted" => "the LB budget was spent",
        "PortRangeFull" => "no automatic port left, budget spent",
        "TooLarge" => "too large for any LB",
        "Unsupported" => "no LB type supports it",
        "PinnedUnavailable" => "its pinned LB cannot take it",
        _ => "other",
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

/// Wraps text at `width` columns, keeping leading indentation.
pub fn wrap(text: &str, width: usize) -> String {
    let indent: String = text.chars().take_while(|c| *c == ' ').collect();
    let mut out = String::new();
    let mut line = indent.clone();
    for word in text.split_whitespace() {
        if line.trim().is_empty() {
            line.push_str(word);
        } else if line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = format!("{indent}  {word}");
        } else {
            line.push(' ');
            line.push_str(word);
        }
    }
    out.push_str(&line);
    out
}

// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Mean and half-width of the 95% confidence interval (Student's t).
pub fn mean_ci(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (var / n as f64).sqrt())
}

/// A metric's mean and 95% half-width over the runs it applies to, `None` when it applies
/// to none (a ratio over nothing, no wait measured).
pub fn metric_ci(runs: &[Summary], get: Metric) -> Option<(f64, f64)> {
    let xs: Vec<f64> = runs.iter().filter_map(get).collect();
    (!xs.is_empty()).then(|| mean_ci(&xs))
}

/// The compare table's columns: a subset that fits 100 columns; the rest is in the JSON and
/// the HTML report.
const COMPARE: &[&str] = &[
    "served",
    "LBs (mean)",
    "LBs / lower bound",
    "cost",
    "savings vs one LB per Service",
    "wait p95",
];

fn metric(name: &str) -> Option<(Unit, Metric)> {
    METRICS
        .iter()
        .find(|m| m.0 == name)
        .map(|&(_, u, g)| (u, g))
}

/// Side by side: one row per policy, mean ±95% interval over its seeds; fits 100 columns.
pub fn compare_table(groups: &[(String, Vec<Summary>)]) -> String {
    let currency = groups
        .iter()
        .filter_map(|g| g.1.first())
        .map(|s| s.currency.clone())
        .next()
        .unwrap_or_default();
    let heads = [
        "served".to_owned(),
        "LBs".to_owned(),
        "LBs/bound".to_owned(),
        format!("{currency}/month"),
        "savings".to_owned(),
        "wait p95 s".to_owned(),
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (g, runs) in groups {
        let mut row = vec![format!("{} (n={})", truncate(g, 14), runs.len())];
        for name in COMPARE {
            let Some((unit, get)) = metric(name) else {
                continue;
            };
            let unit = if unit == Unit::Seconds {
                Unit::Number
            } else {
                unit
            };
            let unit = if unit == Unit::PerMonth {
                Unit::Money
            } else {
                unit
            };
            row.push(
                metric_ci(runs, get).map_or_else(|| "n/a".to_owned(), |(m, h)| fmt_ci(m, h, unit)),
            );
        }
        rows.push(row);
    }
    let mut widths = vec!["policy".len()];
    widths.extend(heads.iter().map(String::len));
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let _ = write!(out, "{:<w$}", "policy", w = widths[0]);
    for (i, h) in heads.iter().enumerate() {
        let _ = write!(out, " {:>w$}", h, w = widths[i + 1]);
    }
    out.push('\n');
    for row in rows {
        let _ = write!(out, "{:<w$}", row[0], w = widths[0]);
        for (i, c) in row.iter().enumerate().skip(1) {
            let _ = write!(out, " {:>w$}", c, w = widths[i]);
        }
        out.push('\n');
    }
    out
}

/// One paragraph for people: which policy is cheapest among those that serve as well as
/// the best, against one LB per Service and the 2018 rule — or that they tie, when the 95%
/// intervals overlap.
pub fn verdict(groups: &[(String, Vec<Summary>)]) -> String {
    // A run with no claim live in the measured period had nothing to serve: it served
    // all it was asked, as far as choosing a policy goes.
    let served = |runs: &[Summary]| {
        mean_ci(
            &runs
                .iter()
                .map(|s| s.served_fraction.unwrap_or(1.0))
                .collect::<Vec<_>>(),
        )
    };
    let cost =
        |runs: &[Summary]| mean_ci(&runs.iter().map(|s| s.cost_per_month).collect::<Vec<_>>());
    let shared: Vec<&(String, Vec<Summary>)> = groups
        .iter()
        .filter(|(g, runs)| g != "dedicated" && !runs.is_empty())
        .collect();
    if shared
        .iter()
        .all(|(_, runs)| runs.iter().all(|s| s.served_fraction.is_none()))
    {
        return "no claim was live in the measured period of any run: nothing to compare"
            .to_owned();
    }
    let Some(best_served) = shared
        .iter()
        .map(|(_, r)| served(r))
        .max_by(|a, b| a.0.total_cmp(&b.0))
    else {
        return String::new();
    };
    // Policies that serve clearly less than the best (by more than their intervals and a
    // tenth of a percentage point) are out: cheaper by not serving is not cheaper.
    let serving: Vec<&&(String, Vec<Summary>)> = shared
        .iter()
        .filter(|(_, r)| {
            let (m, h) = served(r);
            m + h + 0.001 >= best_served.0 - best_served.1
        })
        .collect();
    let mut ranked: Vec<(&str, (f64, f64), &[Summary])> = serving
        .iter()
        .map(|(g, r)| (g.as_str(), cost(r), r.as_slice()))
        .collect();
    ranked.sort_by(|a, b| a.1.0.total_cmp(&b.1.0));
    let Some(&(name, (c, h), runs)) = ranked.first() else {
        return String::new();
    };
    let currency = runs.first().map_or("", |s| s.currency.as_str());
    let ties: Vec<&str> = ranked[1..]
        .iter()
        .filter(|(_, (c2, h2), _)| c2 - h2 <= c + h)
        .map(|(n, _, _)| *n)
        .collect();
    let mean = |f: fn(&Summary) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
    let mut out = String::from("\n");
    if ties.is_empty() {
        let _ = write!(out, "best: {name}");
    } else {
        let _ = write!(
            out,
            "cheapest: {name}, tied with {} (their 95% intervals overlap)",
            ties.join(", ")
        );
    }
    // Left out when no run had a bound.
    let vs_bound = metric_ci(runs, |s| s.lbs_over_lower_bound)
        .map_or_else(String::new, |(x, _)| format!(" ({x:.3}× the lower bound)"));
    let _ = write!(
        out,
        " — {:.1} LBs on average{vs_bound}, {c:.2} {currency}/month, serving {} of claim-hours",
        mean(|s| s.lbs_mean),
        pct_or_na(metric_ci(runs, |s| s.served_fraction).map(|(x, _)| x)),
    );
    let savings: Vec<f64> = runs.iter().filter_map(|s| s.savings_fraction).collect();
    if !savings.is_empty() {
        let _ = write!(
            out,
            "; saves {} against one LB per Service",
            pct(savings.iter().sum::<f64>() / savings.len() as f64)
        );
    }
    if let Some((_, seed)) = groups.iter().find(|(g, _)| g.starts_with("seed")) {
        let b = cost(seed).0;
        if b > 0.0 && name != "seed" && !name.starts_with("seed:") {
            let _ = write!(out, " and {} against the 2018 rule", pct(1.0 - c / b));
        }
    }
    if ranked.len() < shared.len() {
        let _ = write!(
            out,
            " (policies serving clearly less were not ranked: {})",
            shared
                .iter()
                .filter(|g| !serving.iter().any(|s| s.0 == g.0))
                .map(|g| g.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    wrap(&out, 96) + "\n"
}

/// The time series as CSV.
pub fn samples_csv(samples: &[Sample]) -> String {
    let mut out = String::from(Sample::CSV_HEADER);
    out.push('\n');
    for s in samples {
        out.push_str(&s.csv_row());
        out.push('\n');
    }
    out
}

/// Colours that stay apart for colour-blind readers (Okabe–Ito, its pale yellow swapped for
/// a dark grey that shows on white), with dash patterns so that identical series stay
/// visible.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(110, 110, 110),
];

/// The series drawn as a reference rather than a policy: grey, thick, dotted, always the
/// same whatever its position.
pub const LOWER_BOUND: &str = "lower bound";
const BOUND_COLOUR: RGBColor = RGBColor(120, 120, 120);
const BOUND_DASH: (u32, u32) = (3, 4);

/// A series' colour, dash (0 = solid) and width.
fn series_style(i: usize, name: &str) -> (RGBColor, (u32, u32), u32) {
    if name == LOWER_BOUND {
        (BOUND_COLOUR, BOUND_DASH, 4)
    } else {
        (
            COLOURS[i % COLOURS.len()],
            DASHES[(i / 2) % DASHES.len()],
            2,
        )
    }
}

/// Dash length and gap per series (0 = solid).
const DASHES: [(u32, u32); 4] = [(0, 0), (8, 4), (2, 3), (12, 4)];

/// How a chart's y axis is labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Whole numbers (counts).
    Count,
    /// Decimals.
    Decimal,
}

/// One drawing of a chart, `w`×`h`, scaled to its container's width.
fn svg_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    axis: Axis,
    series: &[(String, Vec<(f64, f64)>)],
    (w, h): (u32, u32),
    x_labels: usize,
) -> Result<String, String> {
    let mut svg = String::new();
    let x_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_top = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let y_max = match axis {
        Axis::Count => (y_top * 1.1).ceil().max(1.0),
        Axis::Decimal => (y_top * 1.1).max(1e-6),
    };
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 21))
                .margin(14)
                .x_label_area_size(48)
                .y_label_area_size(84)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
            // Counts are labelled at whole numbers only.
            let count_label = |v: &f64| {
                if (v - v.round()).abs() < 1e-9 {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            };
            let decimal_label = |v: &f64| {
                if y_max >= 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            };
            let integer_ticks = (y_max as usize).clamp(1, 10);
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_desc)
                .y_desc(y_desc)
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 16))
                .light_line_style(WHITE)
                .x_labels(x_labels)
                .x_label_formatter(&|v| format!("{v:.0}"));
            match axis {
                Axis::Count => mesh
                    .y_labels(integer_ticks + 1)
                    .y_label_formatter(&count_label),
                Axis::Decimal => mesh.y_label_formatter(&decimal_label),
            };
            mesh.draw()?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let (colour, (dash, gap), width) = series_style(i, name);
                let style = colour.stroke_width(width);
                if dash == 0 {
                    chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
                } else {
                    chart.draw_series(DashedLineSeries::new(
                        pts.iter().copied(),
                        dash,
                        gap,
                        style,
                    ))?;
                }
            }
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| e.to_string())?;
    }
    // Responsive: scale to the page's width, keep the aspect ratio (plotters writes the
    // viewBox itself; add it only if it did not).
    let size = if svg.contains("viewBox=") {
        String::new()
    } else {
        format!("viewBox=\"0 0 {w} {h}\" ")
    };
    Ok(svg.replacen(
        &format!("width=\"{w}\" height=\"{h}\""),
        &format!("{size}width=\"100%\" preserveAspectRatio=\"xMidYMid meet\""),
        1,
    ))
}

/// A line chart as a responsive SVG string, with its legend below it in HTML (never over
/// the data).
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    axis: Axis,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    // Two drawings: a wide one, and a narrow one for phones, where the wide one's text
    // would shrink below reading size. The page shows the one that fits.
    let wide = svg_chart(title, x_desc, y_desc, axis, series, (860, 340), 10);
    let narrow = svg_chart(title, x_desc, y_desc, axis, series, (480, 320), 5);
    let (wide, narrow) = match (wide, narrow) {
        (Ok(w), Ok(n)) => (w, n),
        (Err(e), _) | (_, Err(e)) => {
            return format!("<p>chart {} could not be drawn: {e}</p>", escape(title));
        }
    };
    let mut legend = String::from("<p class=\"legend\">");
    for (i, (name, _)) in series.iter().enumerate() {
        let (c, (dash, gap), width) = series_style(i, name);
        let dasharray = if dash == 0 {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash} {gap}\"")
        };
        let _ = write!(
            legend,
            "<span><svg width=\"28\" height=\"10\"><line x1=\"0\" y1=\"5\" x2=\"28\" y2=\"5\" \
             stroke=\"rgb({},{},{})\" stroke-width=\"{}\"{dasharray}/></svg> {}</span>",
            c.0,
            c.1,
            c.2,
            width + 1,
            escape(name)
        );
    }
    legend.push_str("</p>");
    format!(
        "<figure><div class=\"wide\">{wide}</div><div class=\"narrow\">{narrow}</div>{legend}</figure>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML report for one or more groups of runs (one per policy): the
/// same figures as the terminal (means and 95% intervals over seeds), the first seed's
/// time series as charts, and the glossary.
pub fn html_report(title: &str, groups: &[RunGroup]) -> String {
    let currency = groups
        .iter()
        .filter_map(|g| g.summaries.first())
        .map(|s| s.currency.clone())
        .next()
        .unwrap_or_default();
    let series = |f: &dyn Fn(&Sample) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
        groups
            .iter()
            .map(|g| {
                (
                    g.label.clone(),
                    g.samples.iter().map(|x| (x.t_hours, f(x))).collect(),
                )
            })
            .collect()
    };
    let mut lbs = series(&|x| x.lbs() as f64);
    if let Some(g) = groups.first() {
        lbs.push((
            LOWER_BOUND.into(),
            g.samples
                .iter()
                .map(|x| (x.t_hours, x.lower_bound as f64))
                .collect(),
        ));
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}td:not(:first-child){{white-space:nowrap}}\
         figure{{margin:1em 0}}svg{{max-width:100%;height:auto}}.narrow{{display:none}}\
         @media (max-width:700px){{.wide{{display:none}}.narrow{{display:block}}}}\
         .legend span{{margin-right:1.5em;white-space:nowrap}}.warn{{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em}}\
         dt{{font-weight:bold;margin-top:.5em}}.table{{overflow-x:auto}}</style>\
         </head><body><h1>{t}</h1>",
        t = escape(title)
    );
    for g in groups {
        if let Some(s) = g.summaries.iter().find(|s| !s.all_served()) {
            let _ = write!(
                html,
                "<p class=\"warn\"><b>{}</b>: {}</p>",
                escape(&g.label),
                escape(&service_warning(s).unwrap_or_default())
            );
        }
    }
    let seeds: Vec<usize> = groups.iter().map(|g| g.summaries.len()).collect();
    let _ = write!(
        html,
        "<h2>Summary</h2><p>Mean over {} seed(s) per column, ± the 95% interval where there \
         are several; costs in {}.</p><div class=\"table\"><table><tr><th>metric</th>",
        seeds.iter().max().copied().unwrap_or(0),
        escape(&currency)
    );
    for g in groups {
        let _ = write!(
            html,
            "<th>{} (n={})</th>",
            escape(&g.label),
            g.summaries.len()
        );
    }
    html.push_str("</tr>");
    for (name, unit, get) in METRICS {
        let _ = write!(html, "<tr><td>{name}</td>");
        for g in groups {
            let cell = metric_ci(&g.summaries, *get).map_or_else(
                || "n/a".to_owned(),
                |(m, h)| {
                    let v = fmt_value(m, *unit, &currency);
                    if h > 0.0 {
                        format!("{v} ± {}", fmt_ci(h, 0.0, *unit))
                    } else {
                        v
                    }
                },
            );
            let _ = write!(html, "<td>{}</td>", escape(&cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></div>");
    let first = groups
        .first()
        .and_then(|g| g.summaries.first())
        .map_or(0, |s| s.seed);
    let _ = write!(
        html,
        "<p>The charts show one run per column: seed {first}.</p>"
    );
    html.push_str("<h2>Load balancers over time</h2>");
    html.push_str(&line_chart(
        "LBs billed vs the lower bound",
        "hours",
        "LBs",
        Axis::Count,
        &lbs,
    ));
    html.push_str("<h2>Cost</h2>");
    html.push_str(&line_chart(
        &format!("cost per hour ({currency})"),
        "hours",
        &format!("{currency} / h"),
        Axis::Decimal,
        &series(&|x| x.cost_per_hour),
    ));
    html.push_str("<h2>Waiting claims</h2>");
    html.push_str(&line_chart(
        "claims waiting",
        "hours",
        "claims",
        Axis::Count,
        &series(&|x| x.claims_waiting as f64),
    ));
    let waits: Vec<(String, Vec<(f64, f64)>)> = groups
        .iter()
        .filter_map(|g| {
            let s = g.summaries.first()?;
            let pts = s
                .waits
                .quantiles_s
                .iter()
                .enumerate()
                .map(|(i, &w)| (i as f64 * 5.0, w))
                .collect();
            Some((g.label.clone(), pts))
        })
        .collect();
    html.push_str("<h2>Waits (seconds from arrival to served)</h2>");
    html.push_str(&line_chart(
        "wait by percentile",
        "percentile",
        "seconds",
        Axis::Decimal,
        &waits,
    ));
    html.push_str("<h2>Glossary</h2><dl>");
    for (term, meaning) in GLOSSARY {
        let _ = write!(
            html,
            "<dt>{}</dt><dd>{}</dd>",
            escape(term),
            escape(meaning)
        );
    }
    html.push_str("</dl></body></html>\n");
    html
}
