//! The PNG charts pantau draws: the picture of the evidence a Tikor member sees on a
//! phone, drawn from series a rule returns with its alert, and the realization curve of
//! the monthly report ([`realization`]).
//!
//! Which chart an alert gets follows from its evidence, not its rule, so a new rule that
//! returns the same columns gets the same picture:
//! - `daily_payments`, `peer_daily_payments`, `benefit_window`, `first_day`: the outlet's
//!   payments day by day against a typical peer, disbursement windows shaded
//!   (seasonal outlets);
//! - `peer_prices`, `outlet_price`: every peer outlet's price of the commodity (its
//!   kecamatan or its regency, `peer_scope`), the outlet's own bar marked (markups);
//! - `swipe_minutes`, `burst_start_minute`, `burst_end_minute`: the terminal's KKS swipes
//!   of the day in 10-minute bars, the burst marked (card collection).

use std::path::Path;

use chrono::NaiveDate;
use plotters::prelude::*;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use pantau_core::model::Alert;
use pantau_core::model::OutletInfo;

pub const WIDTH: u32 = 640;
pub(crate) const HEIGHT: u32 = 360;
/// The outlet under suspicion, and the burst.
pub(crate) const SUSPECT: RGBColor = RGBColor(200, 40, 40);
/// Everyone else.
pub(crate) const PEER: RGBColor = RGBColor(150, 150, 150);
/// The typical peer's line and the district median.
pub(crate) const REFERENCE: RGBColor = RGBColor(30, 90, 200);
/// Days within a disbursement window.
pub(crate) const WINDOW_SHADE: RGBColor = RGBColor(255, 230, 160);
const FONT: &str = "sans-serif";
/// The burst chart's bar width.
const BIN_MINUTES: i64 = 10;

/// A drawn chart: the PNG, what it shows in words (the caption and the HTML alt text),
/// and how many bars it draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub png: Vec<u8>,
    pub caption: String,
    pub bars: usize,
}

/// Registers the TrueType font the charts' text is drawn in. Without it no chart can
/// be drawn, so `pantau notify` checks it at start.
pub fn load_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| Error::FontUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    // The font registry keeps a 'static borrow; the font lives as long as the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes).map_err(|_| Error::NotAFont {
        path: path.to_path_buf(),
    })
}

/// DejaVu Sans where Debian installs it (fonts-dejavu-core): it has every glyph of
/// Bahasa Indonesia's text and the rupiah figures.
pub fn default_font() -> std::path::PathBuf {
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into()
}

fn numbers(evidence: &Map<String, Value>, key: &str) -> Option<Vec<f64>> {
    evidence
        .get(key)?
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect()
}

fn number(evidence: &Map<String, Value>, key: &str) -> Option<f64> {
    evidence.get(key)?.as_f64()
}

/// The chart for an alert, when its evidence carries the series of one; an error only
/// when the series are there but cannot be drawn.
pub(crate) fn evidence_chart(alert: &Alert, outlet: Option<&OutletInfo>) -> Result<Option<Chart>> {
    let e = &alert.evidence;
    let outlet_name = outlet
        .map(|o| o.name.clone())
        .or_else(|| {
            e.get("outlet_name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| alert.entity_id.clone());
    if let (Some(daily), Some(peer), Some(window), Some(first_day)) = (
        numbers(e, "daily_payments"),
        numbers(e, "peer_daily_payments"),
        numbers(e, "benefit_window"),
        e.get("first_day").and_then(Value::as_str),
    ) {
        let first_day = NaiveDate::parse_from_str(first_day, "%Y-%m-%d").map_err(|source| {
            Error::EvidenceDate {
                first_day: first_day.to_owned(),
                source,
            }
        })?;
        return seasonal(&outlet_name, first_day, &daily, &peer, &window).map(Some);
    }
    if let (Some(prices), Some(own)) = (numbers(e, "peer_prices"), number(e, "outlet_price")) {
        let commodity = e
            .get("commodity")
            .and_then(Value::as_str)
            .unwrap_or("")
            .replace('_', " ")
            .to_lowercase();
        let unit = e.get("unit").and_then(Value::as_str).unwrap_or("");
        let median = number(e, "peer_median");
        let peers = match e.get("peer_scope").and_then(Value::as_str) {
            Some("kecamatan") => "kecamatan",
            _ => "kabupaten/kota",
        };
        return price_spread(&outlet_name, &commodity, unit, own, median, peers, &prices).map(Some);
    }
    if let (Some(minutes), Some(start), Some(end)) = (
        numbers(e, "swipe_minutes"),
        number(e, "burst_start_minute"),
        number(e, "burst_end_minute"),
    ) {
        let minutes: Vec<i64> = minutes.iter().map(|m| *m as i64).collect();
        return burst(&alert.entity_id, &minutes, start as i64, end as i64).map(Some);
    }
    Ok(None)
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Draw {
        source: Box::new(e),
    }
}

/// Draws on an RGB canvas and encodes it as PNG.
fn render(
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Read on phones, often on slow mobile data: the smallest file is worth the time.
        encoder.set_compression(png::Compression::Best);
        let png_error = |source| Error::Png { source };
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&rgb).map_err(png_error)?;
    }
    Ok(png)
}

type Plot<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A titled plot area with room for the axes' labels.
fn plot<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    title: String,
    y_label_width: u32,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Plot<'a, 'b>> {
    ChartBuilder::on(root)
        .caption(title, (FONT, 18).into_font())
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(y_label_width)
        .build_cartesian_2d(x, y)
        .map_err(draw_error)
}

/// The series' labels, in a box where they hide the least.
fn legend<'a, 'b: 'a>(chart: &mut Plot<'a, 'b>, position: SeriesLabelPosition) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)
}

/// A bar over `[slot, slot + 1)` on the x axis, narrower than its slot so that
/// neighbouring bars stay apart.
fn bar(slot: f64, from: f64, to: f64, colour: RGBColor) -> Rectangle<(f64, f64)> {
    Rectangle::new([(slot + 0.15, from), (slot + 0.85, to)], colour.filled())
}

fn seasonal(
    outlet_name: &str,
    first_day: NaiveDate,
    daily: &[f64],
    peer: &[f64],
    window: &[f64],
) -> Result<Chart> {
    if daily.len() != peer.len() || daily.len() != window.len() || daily.is_empty() {
        return Err(Error::Evidence(format!(
            "evidence series differ in length: daily_payments {}, peer_daily_payments {}, benefit_window {}",
            daily.len(),
            peer.len(),
            window.len()
        )));
    }
    let days = daily.len();
    let top = daily.iter().chain(peer).fold(1.0f64, |a, b| a.max(*b)) * 1.15;
    let bars = daily.iter().filter(|v| **v > 0.0).count();
    let png = render(|root| {
        let mut chart = plot(
            root,
            format!("Transaksi harian {outlet_name}"),
            40,
            0f64..days as f64,
            0f64..top,
        )?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| {
                let day = first_day + chrono::Duration::days(x.floor() as i64);
                day.format("%d/%m").to_string()
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc("transaksi/hari")
            .label_style((FONT, 12))
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(
                window
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| **w > 0.0)
                    .map(|(i, _)| {
                        Rectangle::new(
                            [(i as f64, 0.0), (i as f64 + 1.0, top)],
                            WINDOW_SHADE.filled(),
                        )
                    }),
            )
            .map_err(draw_error)?
            .label("masa pencairan")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], WINDOW_SHADE.filled()));
        chart
            .draw_series(
                daily
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(i, v)| bar(i as f64, 0.0, *v, SUSPECT)),
            )
            .map_err(draw_error)?
            .label(outlet_name.to_owned())
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], SUSPECT.filled()));
        chart
            .draw_series(LineSeries::new(
                peer.iter().enumerate().map(|(i, v)| (i as f64 + 0.5, *v)),
                REFERENCE.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label("rata-rata e-Warong lain")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], REFERENCE.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })?;
    Ok(Chart {
        png,
        caption: format!(
            "Grafik: transaksi harian {outlet_name} selama {days} hari (batang merah, {bars} hari aktif) dibanding rata-rata e-Warong lain (garis biru); latar kuning = masa pencairan."
        ),
        bars,
    })
}

fn rupiah(v: f64) -> String {
    pantau_core::text::format_id_number(&Value::from(v.round() as i64))
}

fn price_spread(
    outlet_name: &str,
    commodity: &str,
    unit: &str,
    own: f64,
    median: Option<f64>,
    peers: &str,
    prices: &[f64],
) -> Result<Chart> {
    if prices.is_empty() {
        return Err(Error::Evidence("evidence peer_prices is empty".to_owned()));
    }
    let mut sorted = prices.to_vec();
    sorted.sort_by(f64::total_cmp);
    // The outlet's own bar: the last at its price, since several may share it.
    let own_slot = sorted
        .iter()
        .rposition(|p| (*p - own).abs() < 0.5)
        .unwrap_or(sorted.len() - 1);
    let low = sorted[0].min(own) * 0.8;
    let high = sorted[sorted.len() - 1].max(own) * 1.08;
    let n = sorted.len();
    let png = render(|root| {
        let mut chart = plot(
            root,
            format!("Harga {commodity} per {unit}: {n} e-Warong"),
            60,
            0f64..n as f64,
            low..high,
        )?;
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_label_formatter(&|y| rupiah(*y))
            .y_desc("Rp")
            .label_style((FONT, 12))
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(
                sorted
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != own_slot)
                    .map(|(i, p)| bar(i as f64, low, *p, PEER)),
            )
            .map_err(draw_error)?
            .label("e-Warong lain")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], PEER.filled()));
        chart
            .draw_series(std::iter::once(bar(
                own_slot as f64,
                low,
                sorted[own_slot],
                SUSPECT,
            )))
            .map_err(draw_error)?
            .label(format!("{outlet_name}: Rp {}", rupiah(own)))
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], SUSPECT.filled()));
        if let Some(median) = median {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, median), (n as f64, median)],
                    REFERENCE.stroke_width(2),
                ))
                .map_err(draw_error)?
                .label(format!("median {peers}: Rp {}", rupiah(median)))
                .legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 12, y)], REFERENCE.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })?;
    Ok(Chart {
        png,
        caption: format!(
            "Grafik: harga {commodity} per {unit} di {n} e-Warong, dari termurah; batang merah = {outlet_name} (Rp {}), garis biru = median {peers}.",
            rupiah(own)
        ),
        bars: n,
    })
}

fn clock(minute: i64) -> String {
    format!("{:02}.{:02}", minute.div_euclid(60), minute.rem_euclid(60))
}

fn burst(terminal: &str, minutes: &[i64], start: i64, end: i64) -> Result<Chart> {
    let (Some(first), Some(last)) = (minutes.iter().min(), minutes.iter().max()) else {
        return Err(Error::Evidence(
            "evidence swipe_minutes is empty".to_owned(),
        ));
    };
    let from = first.min(&start).div_euclid(60) * 60;
    let to = (last.max(&end).div_euclid(60) + 1) * 60;
    let bins = ((to - from) / BIN_MINUTES) as usize;
    let mut counts = vec![0u32; bins];
    for m in minutes {
        counts[((m - from) / BIN_MINUTES) as usize] += 1;
    }
    let in_burst = |bin: usize| {
        let bin_start = from + bin as i64 * BIN_MINUTES;
        bin_start + BIN_MINUTES > start && bin_start <= end
    };
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
    let bars = counts.iter().filter(|c| **c > 0).count();
    let png = render(|root| {
        let mut chart = plot(
            root,
            format!("Gesekan KKS di terminal {terminal}, per {BIN_MINUTES} menit"),
            40,
            0f64..bins as f64,
            0f64..top,
        )?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| clock(from + (*x * BIN_MINUTES as f64) as i64))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc("kartu")
            .label_style((FONT, 12))
            .draw()
            .map_err(draw_error)?;
        for (colour, label, burst_bins) in [
            (PEER, "gesekan lain", false),
            (SUSPECT, "gesekan massal", true),
        ] {
            chart
                .draw_series(
                    counts
                        .iter()
                        .enumerate()
                        .filter(|(i, c)| **c > 0 && in_burst(*i) == burst_bins)
                        .map(|(i, c)| bar(i as f64, 0.0, *c as f64, colour)),
                )
                .map_err(draw_error)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })?;
    Ok(Chart {
        png,
        caption: format!(
            "Grafik: {} gesekan KKS di terminal {terminal} hari itu, per {BIN_MINUTES} menit; merah = pukul {} sampai {}.",
            minutes.len(),
            clock(start),
            clock(end)
        ),
        bars,
    })
}

/// A district's realization through its period: the share of credited KPM who had
/// spent, day by day, with the target date and share marked when there is one.
pub fn realization(
    regency_name: &str,
    days: &[(NaiveDate, f64)],
    target: Option<(NaiveDate, f64)>,
) -> Result<Chart> {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return Err(Error::NoDays {
            regency_name: regency_name.to_owned(),
        });
    };
    let from = first.0;
    let span = (last.0 - from).num_days().max(1) as f64;
    let at = |d: NaiveDate| (d - from).num_days() as f64;
    let png = render(|root| {
        let mut chart = plot(
            root,
            format!("Realisasi {regency_name}"),
            45,
            0f64..span,
            0f64..100f64,
        )?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| {
                (from + chrono::Duration::days(x.round() as i64))
                    .format("%d/%m")
                    .to_string()
            })
            .y_label_formatter(&|y| format!("{y:.0}%"))
            .y_desc("KPM sudah belanja")
            .label_style((FONT, 12))
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(LineSeries::new(
                days.iter().map(|(d, share)| (at(*d), share * 100.0)),
                REFERENCE.stroke_width(3),
            ))
            .map_err(draw_error)?
            .label("KPM sudah belanja")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], REFERENCE.stroke_width(3)));
        if let Some((date, share)) = target {
            let x = at(date).clamp(0.0, span);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(x, 0.0), (x, 100.0)],
                    SUSPECT.stroke_width(1),
                )))
                .map_err(draw_error)?;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (x, share * 100.0),
                    5,
                    SUSPECT.filled(),
                )))
                .map_err(draw_error)?
                .label(format!(
                    "target {:.0}% pada {}",
                    share * 100.0,
                    date.format("%d/%m")
                ))
                .legend(|(x, y)| Circle::new((x + 6, y), 4, SUSPECT.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })?;
    let final_share = last.1 * 100.0;
    Ok(Chart {
        png,
        caption: format!(
            "Grafik: persentase KPM {regency_name} yang sudah berbelanja, per hari; {final_share:.1}% pada {}.",
            last.0.format("%d/%m/%Y")
        ),
        bars: 0,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pantau_core::error::{Recoverable, Recovery};

    /// The bars of one colour: runs of it along the lowest pixel row it reaches, which
    /// is just above the x axis, below every legend swatch.
    pub(crate) fn bars_of(png_bytes: &[u8], colour: RGBColor) -> usize {
        let decoder = png::Decoder::new(png_bytes);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("a frame");
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let is = |x: u32, y: u32| {
            let i = ((y * WIDTH + x) * 3) as usize;
            buf[i..i + 3] == [colour.0, colour.1, colour.2]
        };
        let Some(row) = (0..HEIGHT).rev().find(|y| (0..WIDTH).any(|x| is(x, *y))) else {
            return 0;
        };
        (0..WIDTH)
            .filter(|x| is(*x, row) && (*x == 0 || !is(x - 1, row)))
            .count()
    }

    pub(crate) fn font() {
        load_font(&default_font()).expect("DejaVu Sans (Debian fonts-dejavu-core)");
    }

    fn alert_with(evidence: Value) -> Alert {
        let mut alert = crate::message::tests::alert();
        alert.evidence = evidence.as_object().cloned().unwrap();
        alert
    }

    #[test]
    fn a_seasonal_outlet_shows_a_bar_per_active_day_and_the_windows_shaded() {
        font();
        let mut daily = vec![0; 28];
        let mut window = vec![0; 28];
        for d in [3, 4, 5, 6, 17, 18, 19] {
            daily[d] = 20 + d;
        }
        for w in window.iter_mut().skip(3).take(8) {
            *w = 1;
        }
        let alert = alert_with(serde_json::json!({
            "first_day": "2025-01-01",
            "daily_payments": daily,
            "peer_daily_payments": vec![4.5; 28],
            "benefit_window": window,
        }));
        let chart = evidence_chart(&alert, None).unwrap().expect("a chart");
        assert_eq!(chart.bars, 7);
        assert_eq!(bars_of(&chart.png, SUSPECT), 7);
        // One shaded stretch of 8 days, behind 4 of the bars.
        assert!(chart.png.len() < 60_000, "{} bytes", chart.png.len());
        assert!(chart.caption.contains("7 hari aktif"));
    }

    #[test]
    fn a_markup_shows_every_outlet_of_the_district_and_marks_its_own() {
        font();
        let alert = alert_with(serde_json::json!({
            "commodity": "DAGING_AYAM", "unit": "kg",
            "outlet_price": 16500, "peer_median": 12400, "peer_scope": "kecamatan",
            "peer_prices": [12000, 12100, 12400, 12400, 12500, 12900, 16500],
        }));
        let chart = evidence_chart(&alert, None).unwrap().expect("a chart");
        assert_eq!(chart.bars, 7);
        assert_eq!(bars_of(&chart.png, PEER), 6);
        assert_eq!(bars_of(&chart.png, SUSPECT), 1);
        assert!(
            chart.caption.contains("harga daging ayam per kg")
                && chart.caption.contains("Rp 16.500"),
            "{}",
            chart.caption
        );
    }

    #[test]
    fn a_burst_shows_the_days_swipes_in_ten_minute_bars_with_the_burst_marked() {
        font();
        let mut minutes = vec![480, 515, 700, 1000];
        minutes.extend((0..30).map(|i| 600 + i)); // 10.00 to 10.29: three bins
        let alert = alert_with(serde_json::json!({
            "swipe_minutes": minutes, "burst_start_minute": 600, "burst_end_minute": 629,
        }));
        let chart = evidence_chart(&alert, None).unwrap().expect("a chart");
        assert_eq!(chart.bars, 7);
        assert_eq!(bars_of(&chart.png, SUSPECT), 3);
        assert_eq!(bars_of(&chart.png, PEER), 4);
        assert!(chart.caption.contains("pukul 10.00 sampai 10.29"));
    }

    #[test]
    fn evidence_without_series_has_no_chart_and_broken_series_are_named() {
        font();
        let plain = alert_with(serde_json::json!({"active_days": 3}));
        assert_eq!(evidence_chart(&plain, None).unwrap(), None);
        let broken = alert_with(serde_json::json!({
            "first_day": "2025-01-01", "daily_payments": [1, 2],
            "peer_daily_payments": [1.0], "benefit_window": [0, 1],
        }));
        let e = evidence_chart(&broken, None).unwrap_err();
        assert!(e.to_string().contains("peer_daily_payments 1"), "{e}");
        // One alert's evidence: its message goes without the chart, the others are fine.
        assert_eq!(e.recovery(), Recovery::DeadLetter);
    }
}
