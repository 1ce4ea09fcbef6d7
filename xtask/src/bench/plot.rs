//! The bench's plot: req/s and p99 per configuration, two horizontal bar charts in one SVG (plotters'
//! SVG backend writes text as SVG text, so no font files are needed).

use std::path::Path;

use anyhow::Context as _;
use plotters::{coord::ranged1d::SegmentValue, prelude::*};

use super::report::Results;

/// Writes the plot of `results`' measured rows to `path`.
///
/// # Errors
/// Nothing was measured, or drawing fails.
pub fn write(results: &Results, path: &Path) -> anyhow::Result<()> {
    // First configuration at the top: plotters counts segments from the bottom.
    let mut rows: Vec<(String, f64, f64, bool)> = results
        .configurations
        .iter()
        .filter_map(|r| {
            let s = r.summary.as_ref()?;
            let sticky = r.id.starts_with("sticky");
            #[expect(clippy::cast_precision_loss, reason = "µs values")]
            Some((r.title.clone(), s.rps_median / 1000.0, s.p99_us as f64 / 1000.0, sticky))
        })
        .collect();
    anyhow::ensure!(!rows.is_empty(), "no configuration was measured: nothing to plot");
    rows.reverse();
    let height = 140 + 34 * u32::try_from(rows.len()).unwrap_or(u32::MAX / 64);
    let root = SVGBackend::new(path, (1400, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let title = format!("sticky bench {} — wrk -t1 -c64, balancer on one core", results.started);
    let root = root.titled(&title, ("sans-serif", 20)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(900);
    panel(&left, &rows, "req/s (thousands), median; whiskers: min–max", |r| r.1, true, results)?;
    panel(&right, &rows, "p99 latency (ms), median of runs", |r| r.2, false, results)?;
    root.present().with_context(|| format!("failed to write {}", path.display()))
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    rows: &[(String, f64, f64, bool)],
    caption: &str,
    value: fn(&(String, f64, f64, bool)) -> f64,
    labels: bool,
    results: &Results,
) -> anyhow::Result<()> {
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("{e}");
    let n = rows.len();
    let max = rows.iter().map(value).fold(0.0, f64::max).max(1e-3) * 1.15;
    let titles: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(if labels { 420 } else { 10 })
        .build_cartesian_2d(0.0..max, (0..n.saturating_sub(1).max(1)).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if labels => titles.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let color = if r.3 { RGBColor(214, 96, 39) } else { RGBColor(90, 120, 170) };
            let mut bar =
                Rectangle::new([(0.0, SegmentValue::Exact(i)), (value(r), SegmentValue::Exact(i + 1))], color.filled());
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(format!("{:.1}", value(r)), (value(r), SegmentValue::CenterOf(i)), ("sans-serif", 13))
        }))
        .map_err(err)?;
    if labels {
        // min–max of the runs as a thin line through each req/s bar
        let ranges: Vec<(usize, f64, f64)> = results
            .configurations
            .iter()
            .filter_map(|r| r.summary.as_ref())
            .enumerate()
            .map(|(i, s)| (n - 1 - i, s.rps_min / 1000.0, s.rps_max / 1000.0))
            .collect();
        chart
            .draw_series(ranges.into_iter().map(|(i, lo, hi)| {
                PathElement::new(
                    vec![(lo, SegmentValue::CenterOf(i)), (hi, SegmentValue::CenterOf(i))],
                    BLACK.stroke_width(2),
                )
            }))
            .map_err(err)?;
    }
    Ok(())
}
