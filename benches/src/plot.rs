//! The SVG plots of `docs/` (plotters' SVG backend: text is left to the
//! viewer's fonts, so nothing here needs a font file).

use std::path::Path;

use plotters::prelude::*;

type Result<T> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];

/// Bar chart of events/s per event path (log scale); `bars` are (label,
/// median events/s, every repeat's events/s).
///
/// # Errors
/// When the file cannot be written.
pub fn throughput(path: &Path, title: &str, bars: &[(String, f64, Vec<f64>)]) -> Result<()> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = bars
        .iter()
        .flat_map(|(_, m, all)| all.iter().chain(std::iter::once(m)))
        .fold(1.0f64, |a, &b| a.max(b));
    let min = bars
        .iter()
        .flat_map(|(_, m, all)| all.iter().chain(std::iter::once(m)))
        .fold(f64::MAX, |a, &b| a.min(b))
        .max(1.0);
    let top = 10f64.powf(max.log10().ceil() + 0.2);
    let bottom = 10f64.powf(min.log10().floor());
    let n = bars.len();
    let labels: Vec<String> = bars.iter().map(|(l, _, _)| l.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (bottom..top).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc("events per second (log scale, higher is better)")
        .y_label_formatter(&|y| human(*y))
        .draw()
        .map_err(err)?;
    for (i, (label, median, all)) in bars.iter().enumerate() {
        let x = i as f64;
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.32, bottom), (x + 0.32, *median)],
                color.mix(0.8).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(
                all.iter()
                    .map(|v| Circle::new((x + 0.2, *v), 3, BLACK.filled())),
            )
            .map_err(err)?;
        let _ = label;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{}/s", human(*median)),
                (x - 0.25, median * 1.25),
                ("sans-serif", 16),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Latency by percentile ("nines" on x), one line per series of latencies
/// in ns, with a horizontal line at `target_us`.
///
/// # Errors
/// When the file cannot be written.
pub fn latency(
    path: &Path,
    title: &str,
    series: &[(String, Vec<f64>)],
    target_us: f64,
) -> Result<()> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // x = -log10(1 - p): 0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99.
    let curves: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(label, ns)| {
            let mut v: Vec<f64> = ns.iter().map(|x| x / 1e3).collect();
            v.sort_by(f64::total_cmp);
            let len = v.len().max(1) as f64;
            // At most ~2,000 points per curve: one per 0.002 of "nines",
            // always keeping the largest value.
            let mut pts: Vec<(f64, f64)> = Vec::new();
            for (i, us) in v.iter().enumerate() {
                let x = -(1.0 - (i as f64 + 0.5) / len).log10();
                match pts.last_mut() {
                    Some(last) if x - last.0 < 0.002 && i + 1 < v.len() => last.1 = *us,
                    _ => pts.push((x, *us)),
                }
            }
            (label.clone(), pts)
        })
        .collect();
    let xmax = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(3.0f64, f64::max);
    let ymax = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(target_us, f64::max);
    let ymin = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(f64::MAX, f64::min)
        .clamp(0.1, target_us);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            0f64..xmax,
            (10f64.powf(ymin.log10().floor())..10f64.powf(ymax.log10().ceil())).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(xmax.ceil() as usize + 1)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "p0".to_owned(),
            1 => "p90".to_owned(),
            2 => "p99".to_owned(),
            3 => "p99.9".to_owned(),
            4 => "p99.99".to_owned(),
            n => format!("{n} nines"),
        })
        .x_desc("percentile")
        .y_desc("emit → last control's receipt, µs (log scale)")
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, target_us), (xmax, target_us)],
            ShapeStyle::from(&RED).stroke_width(1),
        ))
        .map_err(err)?
        .label(format!("target p99 ≤ {target_us} µs"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    for (i, (label, pts)) in curves.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                pts,
                ShapeStyle::from(&color).stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// 1234567 → "1.23M".
pub fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.3}k", v / 1e3)
    } else {
        format!("{v:.3}")
    }
    .replace(".000", "")
}
