//! Output: terminal tables, time-series CSV, summary JSON and a self-contained HTML report
//! with SVG charts drawn by plotters.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::metrics::{METRICS, Sample, Summary};

/// A run's results as one table: metric, value.
pub fn summary_table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {}  policy {}  seed {}  {:.0} h simulated ({:.0} h measured)",
        s.scenario, s.policy, s.seed, s.duration_h, s.measured_h
    );
    let _ = writeln!(
        out,
        "claims: {} arrived, {} left, {} pending at end",
        s.arrivals, s.departures, s.pending_at_end
    );
    let rows: Vec<(String, String)> = METRICS
        .iter()
        .map(|(name, get)| ((*name).to_owned(), fmt_num(get(s))))
        .collect();
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<w$}  {v:>12}");
    }
    if !s.pending_reasons.is_empty() {
        let reasons: Vec<String> = s
            .pending_reasons
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "  pending decisions: {}", reasons.join(", "));
    }
    if s.tenants.len() > 1 {
        let _ = writeln!(
            out,
            "  tenant            weight  served  listener share  fair share"
        );
        for (name, t) in &s.tenants {
            let _ = writeln!(
                out,
                "  {name:<16} {:>7}  {:>6.3}  {:>14.3}  {:>10.3}",
                t.weight, t.served_fraction, t.listener_share, t.fair_share
            );
        }
    }
    out
}

/// Formats a metric value compactly.
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e9 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
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

/// Side-by-side table: one column per group (policy), mean ± 95% CI over its runs.
pub fn compare_table(groups: &[(String, Vec<Summary>)]) -> String {
    let mut out = String::new();
    let name_w = METRICS.iter().map(|m| m.0.len()).max().unwrap_or(0);
    let col_w = 22;
    let _ = write!(out, "{:<name_w$}", "metric");
    for (g, runs) in groups {
        let _ = write!(out, "  {:>col_w$}", format!("{g} (n={})", runs.len()));
    }
    out.push('\n');
    for (name, get) in METRICS {
        let _ = write!(out, "{name:<name_w$}");
        for (_, runs) in groups {
            let xs: Vec<f64> = runs.iter().map(get).collect();
            let (m, h) = mean_ci(&xs);
            let cell = if h > 0.0 {
                format!("{} ± {}", fmt_num(m), fmt_num(h))
            } else {
                fmt_num(m)
            };
            let _ = write!(out, "  {cell:>col_w$}");
        }
        out.push('\n');
    }
    out
}

/// One paragraph for people: the best policy against one LB per Service and the 2018 rule.
pub fn verdict(groups: &[(String, Vec<Summary>)]) -> String {
    let mean = |runs: &[Summary], f: fn(&Summary) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
    };
    let shared: Vec<&(String, Vec<Summary>)> = groups
        .iter()
        .filter(|(g, runs)| g != "dedicated" && !runs.is_empty())
        .collect();
    let Some(best) = shared
        .iter()
        .min_by(|a, b| mean(&a.1, |s| s.cost_total).total_cmp(&mean(&b.1, |s| s.cost_total)))
    else {
        return String::new();
    };
    let mut out = format!(
        "\nbest: {} — {:.1} LBs on average ({:.3}× the lower bound), {:.2}/h, saving {:.1}% against one LB per Service",
        best.0,
        mean(&best.1, |s| s.lbs_mean),
        mean(&best.1, |s| s.lbs_over_lower_bound),
        mean(&best.1, |s| s.cost_per_hour),
        100.0 * mean(&best.1, |s| s.savings_fraction),
    );
    if let Some((_, seed)) = groups.iter().find(|(g, _)| g.starts_with("seed")) {
        let (a, b) = (
            mean(&best.1, |s| s.cost_total),
            mean(seed, |s| s.cost_total),
        );
        if b > 0.0 {
            let _ = write!(
                out,
                " and {:.1}% against the 2018 rule",
                100.0 * (1.0 - a / b)
            );
        }
    }
    out.push('\n');
    out
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

/// A line chart as an SVG string: named series of (x, y) points.
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let mut svg = String::new();
    let x_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    {
        let root = SVGBackend::with_string(&mut svg, (860, 320)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .light_line_style(WHITE)
                .draw()?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            return format!("<p>chart {title} could not be drawn: {e}</p>");
        }
    }
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML report for one or more runs (one per policy).
pub fn html_report(title: &str, runs: &[(Summary, Vec<Sample>)]) -> String {
    let series = |f: &dyn Fn(&Sample) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
        runs.iter()
            .map(|(s, samples)| {
                (
                    s.policy.clone(),
                    samples.iter().map(|x| (x.t_hours, f(x))).collect(),
                )
            })
            .collect()
    };
    let mut lbs = series(&|x| (x.lbs_ready + x.lbs_provisioning) as f64);
    if let Some((_, samples)) = runs.first() {
        lbs.push((
            "lower bound".into(),
            samples
                .iter()
                .map(|x| (x.t_hours, x.lower_bound as f64))
                .collect(),
        ));
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}</style>\
         </head><body><h1>{t}</h1>",
        t = escape(title)
    );
    html.push_str("<h2>Summary</h2><table><tr><th>metric</th>");
    for (s, _) in runs {
        let _ = write!(html, "<th>{}</th>", escape(&s.policy));
    }
    html.push_str("</tr>");
    for (name, get) in METRICS {
        let _ = write!(html, "<tr><td>{name}</td>");
        for (s, _) in runs {
            let _ = write!(html, "<td>{}</td>", fmt_num(get(s)));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html.push_str("<h2>Load balancers over time</h2>");
    html.push_str(&line_chart(
        "LBs in use vs lower bound",
        "hours",
        "LBs",
        &lbs,
    ));
    html.push_str("<h2>Cost</h2>");
    html.push_str(&line_chart(
        "cost per hour",
        "hours",
        "cost / h",
        &series(&|x| x.cost_per_hour),
    ));
    html.push_str("<h2>Waiting claims</h2>");
    html.push_str(&line_chart(
        "claims pending",
        "hours",
        "claims",
        &series(&|x| x.claims_pending as f64),
    ));
    let waits: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|(s, _)| {
            let pts = s
                .waits
                .quantiles_s
                .iter()
                .enumerate()
                .map(|(i, &w)| (i as f64 * 5.0, w))
                .collect();
            (s.policy.clone(), pts)
        })
        .collect();
    html.push_str("<h2>Waits (seconds from arrival to served)</h2>");
    html.push_str(&line_chart(
        "wait by percentile",
        "percentile",
        "seconds",
        &waits,
    ));
    html.push_str(
        "<table><tr><th>policy</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>",
    );
    for (s, _) in runs {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.policy),
            fmt_num(s.waits.p50_s),
            fmt_num(s.waits.p95_s),
            fmt_num(s.waits.p99_s),
            fmt_num(s.waits.max_s)
        );
    }
    html.push_str("</table></body></html>\n");
    html
}
