//! SVG plots of a run (delivery over time, link utilisation, latency CDF)
//! and of a sweep, with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Sample;

const COLOURS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

type Series = (String, Vec<(f64, f64)>);

/// A line chart of named series.
pub fn lines(path: &Path, title: &str, x: &str, y: &str, series: &[Series]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0f64, f64::MIN);
    for &(a, b) in points {
        x0 = x0.min(a);
        x1 = x1.max(a);
        y0 = y0.min(b);
        y1 = y1.max(b);
    }
    if x0 > x1 {
        (x0, x1, y1) = (0.0, 1.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1 * 1.05)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, s)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(s.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The three plots of a run, into `dir`.
pub fn run_plots(
    dir: &Path,
    samples: &[Sample],
    utilisation: &[(String, Vec<f64>)],
    latencies: &[f64],
) -> Result<(), String> {
    let hours = |t: f64| t / 3600.0;
    let delivered: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| {
            let ratio = if s.wanted == 0 {
                0.0
            } else {
                s.delivered as f64 / s.wanted as f64
            };
            (hours(s.t_s), ratio)
        })
        .collect();
    lines(
        &dir.join("delivery.svg"),
        "Delivery over time",
        "simulated hours",
        "delivered / wanted so far",
        &[("delivery ratio".into(), delivered)],
    )?;
    let util: Vec<Series> = utilisation
        .iter()
        .map(|(class, series)| {
            let points = series
                .iter()
                .zip(samples.iter().skip(1))
                .map(|(u, s)| (hours(s.t_s), *u))
                .collect();
            (class.clone(), points)
        })
        .collect();
    lines(
        &dir.join("utilisation.svg"),
        "Link utilisation",
        "simulated hours",
        "bits on air / capacity (both directions)",
        &util,
    )?;
    let n = latencies.len().max(1) as f64;
    let cdf: Vec<(f64, f64)> = latencies
        .iter()
        .enumerate()
        .map(|(i, &l)| (l, (i + 1) as f64 / n))
        .collect();
    lines(
        &dir.join("latency_cdf.svg"),
        "Latency CDF",
        "latency, s",
        "share of deliveries",
        &[("deliveries".into(), cdf)],
    )
}
