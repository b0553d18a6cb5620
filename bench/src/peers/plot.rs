//! The loss-vs-offered-rate plot (PNG), drawn with plotters' bitmap backend and a
//! TrueType font from Debian's `fonts-dejavu-core` loaded at run time.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use plotters::prelude::*;

use super::{Results, Tool};

/// Where the font is looked for (`$TIDEGATE_BENCH_FONT` first).
pub fn font_path() -> Option<PathBuf> {
    std::env::var_os("TIDEGATE_BENCH_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

fn register_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let p = font_path().ok_or("no TrueType font (apt-get install fonts-dejavu-core)")?;
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a usable font", p.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn color(t: Tool) -> RGBColor {
    match t {
        Tool::Tidegate => RGBColor(0, 114, 178),
        Tool::Softflowd => RGBColor(213, 94, 0),
        Tool::Nfpcapd => RGBColor(0, 158, 115),
        Tool::Pmacctd => RGBColor(204, 121, 167),
        Tool::Argus => RGBColor(230, 159, 0),
    }
}

/// Draws loss (% of sent) against offered rate (kpps), one line per tool.
pub fn loss_vs_rate(r: &Results, out: &Path) -> anyhow::Result<()> {
    register_font()?;
    let mut series: Vec<(Tool, Vec<(f64, f64)>)> = Vec::new();
    for t in Tool::ALL {
        let mut pts: Vec<(f64, f64)> = r
            .outcomes
            .iter()
            .filter(|o| o.tool == t && o.offered_pps > 0.0)
            .filter_map(|o| Some((o.offered_pps / 1000.0, o.loss_pct()?.max(0.0))))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            series.push((t, pts));
        }
    }
    anyhow::ensure!(!series.is_empty(), "nothing to plot");
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .fold(1.0f64, f64::max)
        * 1.08;
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(1.0f64, f64::max)
        .min(100.0)
        * 1.1;
    let e = |e: &dyn std::fmt::Debug| anyhow!("drawing {}: {e:?}", out.display());
    let root = BitMapBackend::new(out, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!(
        "Loss vs offered rate over a veth ({} × {}-byte frames, {} flows)",
        r.packets, r.frame_len, r.flows
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("offered rate (thousand packets/s, measured at the sender)")
        .y_desc("packets not accounted (% of frames on the wire)")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(|x| e(&x))?;
    for (t, pts) in &series {
        let c = color(*t);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
            .map_err(|x| e(&x))?
            .label(t.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 5, c.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
