//! The report as a printable page in Bahasa Indonesia that a district can send as it is:
//! one self-contained HTML file, tables and a realization chart per district (PNG,
//! embedded), laid out for A4.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::Datelike;
use serde_json::Value;

use crate::{month_start, Report};
use pantau_core::text::{format_id_number, MONTHS};
use pantau_notify::message::escape_html as escape;

fn number(n: i64) -> String {
    format_id_number(&Value::from(n))
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0).replace('.', ",")
}

/// A table from a header and rows of already escaped cells; numbers align right.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let numeric = cell
                .chars()
                .all(|c| c.is_ascii_digit() || ".,%- ".contains(c));
            let class = if numeric && !cell.is_empty() {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// A table, or a note saying why there is none.
fn table_or(out: &mut String, empty: &str, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        empty_note(out, empty);
    } else {
        table(out, header, rows);
    }
}

fn empty_note(out: &mut String, text: &str) {
    let _ = write!(out, "<p class=\"empty\">{}</p>", escape(text));
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:10pt;margin:1.5cm;color:#222}\
h1{font-size:15pt;margin-bottom:0}h2{font-size:12pt;margin-top:1.4em;border-bottom:1px solid #999}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{border:1px solid #bbb;padding:2px 5px;vertical-align:top}\
th{background:#eee;text-align:left}td.n{text-align:right;white-space:nowrap}\
.chart{display:inline-block;width:48%;margin:0 1% 1em 0;page-break-inside:avoid}.chart img{width:100%}\
.empty{color:#666;font-style:italic}@page{size:A4;margin:1.2cm}\
@media print{body{margin:0}h2{page-break-after:avoid}tr{page-break-inside:avoid}}";

/// The page.
pub fn page(report: &Report) -> crate::error::Result<String> {
    let regions = pantau_core::regions::Regions::get();
    let name_of = |code: &str| {
        regions
            .regency(code)
            .map_or_else(|| code.to_owned(), |r| r.name.clone())
    };
    let start = month_start(&report.period);
    let period_name = format!("{} {}", MONTHS[start.month0() as usize], start.year());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"id\"><head><meta charset=\"utf-8\">\
         <title>Rekonsiliasi BPNT {period}</title><style>{STYLE}</style></head><body>\
         <h1>Laporan Rekonsiliasi dan Realisasi Bantuan Pangan Non Tunai</h1>\
         <p>Periode penyaluran <strong>{period_name}</strong> ({period}); disusun oleh pantau pada {made} UTC \
         dari data transaksi bank. Nomor kartu ditampilkan sebagai kode samaran.</p>",
        period = escape(&report.period),
        made = report.generated_at.format("%d/%m/%Y %H.%M"),
    );

    out.push_str("<h2>1. Rekapitulasi per kabupaten/kota dan bank</h2>");
    let rows: Vec<Vec<String>> = report
        .summary
        .iter()
        .map(|r| {
            vec![
                escape(&r.regency_name),
                escape(&r.bank),
                number(r.kpm_credited as i64),
                number(r.rupiah_credited),
                number(r.kpm_spent_any as i64),
                number(r.kpm_spent_all as i64),
                number(r.kpm_spent_nothing as i64),
                number(r.rupiah_spent),
                format!(
                    "{} ({})",
                    number(r.reversals as i64),
                    number(r.rupiah_reversed)
                ),
                number(r.balance_outstanding),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "Kabupaten/kota",
            "Bank",
            "KPM menerima",
            "Disalurkan (Rp)",
            "KPM sudah belanja",
            "KPM belanja habis",
            "KPM belum belanja",
            "Dibelanjakan (Rp)",
            "Pembatalan (Rp)",
            "Sisa saldo (Rp)",
        ],
        &rows,
    );

    out.push_str("<h2>2. Realisasi terhadap target</h2>");
    match &report.target {
        Some(t) => {
            let _ = write!(
                out,
                "<p>Target: {} KPM penerima sudah berbelanja pada {}.</p>",
                percent(t.share),
                t.date.format("%d/%m/%Y")
            );
            if report.behind_target.is_empty() {
                empty_note(&mut out, "Semua kabupaten/kota memenuhi target.");
            } else {
                let rows: Vec<Vec<String>> = report
                    .behind_target
                    .iter()
                    .map(|b| {
                        vec![
                            escape(&b.regency_name),
                            b.as_of.format("%d/%m/%Y").to_string(),
                            percent(b.share),
                            percent(b.target_share),
                            percent(b.gap),
                        ]
                    })
                    .collect();
                out.push_str("<p><strong>Belum memenuhi target</strong> (terjauh di atas):</p>");
                table(
                    &mut out,
                    &[
                        "Kabupaten/kota",
                        "Per tanggal",
                        "Realisasi",
                        "Target",
                        "Kekurangan",
                    ],
                    &rows,
                );
            }
        }
        None => empty_note(&mut out, "Tidak ada target yang diberikan (--target-date)."),
    }
    // Behind target first, then the others in code order.
    let mut order: Vec<&str> = report
        .behind_target
        .iter()
        .map(|b| b.regency_code.as_str())
        .collect();
    for code in report.windows.keys() {
        if !order.contains(&code.as_str()) {
            order.push(code);
        }
    }
    for code in order {
        let days: Vec<(chrono::NaiveDate, f64)> = report
            .realization
            .iter()
            .filter(|d| d.regency_code == code)
            .map(|d| (d.date, d.share))
            .collect();
        if days.is_empty() {
            continue;
        }
        let chart = pantau_notify::chart::realization(
            &name_of(code),
            &days,
            report.target.as_ref().map(|t| (t.date, t.share)),
        )?;
        let _ = write!(
            out,
            "<div class=\"chart\"><img alt=\"{}\" src=\"data:image/png;base64,{}\"></div>",
            escape(&chart.caption),
            base64::engine::general_purpose::STANDARD.encode(&chart.png)
        );
    }

    out.push_str("<h2>3. KPM yang tidak berbelanja dalam periode ini</h2>");
    let rows: Vec<Vec<String>> = report
        .non_transacting
        .iter()
        .map(|n| {
            vec![
                escape(&name_of(&n.regency_code)),
                escape(&n.bank),
                escape(&n.card_ref),
                number(n.rupiah_credited),
                if n.usual_outlet_id.is_empty() {
                    "belum pernah bertransaksi".to_owned()
                } else {
                    escape(&format!("{} ({})", n.usual_outlet_name, n.usual_outlet_id))
                },
            ]
        })
        .collect();
    table_or(
        &mut out,
        "Tidak ada.",
        &[
            "Kabupaten/kota",
            "Bank",
            "Kode kartu",
            "Disalurkan (Rp)",
            "e-Warong biasa",
        ],
        &rows,
    );

    out.push_str(
        "<h2>4. Kartu yang menerima beberapa periode tetapi tidak pernah digunakan</h2>\
         <p>Kemungkinan KKS belum sampai ke pemiliknya: periksa bersama bank penyalur.</p>",
    );
    let rows: Vec<Vec<String>> = report
        .never_used
        .iter()
        .map(|n| {
            vec![
                escape(&name_of(&n.regency_code)),
                escape(&n.bank),
                escape(&n.card_ref),
                escape(&n.periods),
                number(n.rupiah_credited),
            ]
        })
        .collect();
    table_or(
        &mut out,
        "Tidak ada.",
        &[
            "Kabupaten/kota",
            "Bank",
            "Kode kartu",
            "Periode",
            "Disalurkan (Rp)",
        ],
        &rows,
    );

    out.push_str("<h2>5. e-Warong dengan peringatan dalam periode ini</h2>");
    let rows: Vec<Vec<String>> = report
        .outlet_alerts
        .iter()
        .map(|o| {
            vec![
                escape(&name_of(&o.regency_code)),
                escape(&format!("{} ({})", o.outlet_name, o.outlet_id)),
                escape(&o.category),
                number(o.alerts as i64),
            ]
        })
        .collect();
    table_or(
        &mut out,
        "Tidak ada peringatan.",
        &["Kabupaten/kota", "e-Warong", "Kategori", "Peringatan"],
        &rows,
    );

    if let Some(differences) = &report.bank_differences {
        out.push_str("<h2>6. Perbedaan dengan data bank</h2>");
        let both = |bank: i64, ours: i64| format!("{} / {}", number(bank), number(ours));
        let rows: Vec<Vec<String>> = differences
            .iter()
            .map(|d| {
                vec![
                    d.line.to_string(),
                    escape(&name_of(&d.regency_code)),
                    escape(&d.bank),
                    both(d.kpm_credited_bank as i64, d.kpm_credited_pantau as i64),
                    both(d.rupiah_credited_bank, d.rupiah_credited_pantau),
                    both(d.rupiah_spent_bank, d.rupiah_spent_pantau),
                ]
            })
            .collect();
        table_or(
            &mut out,
            "Angka bank sama dengan angka pantau untuk setiap baris.",
            &[
                "Baris",
                "Kabupaten/kota",
                "Bank",
                "KPM menerima (bank / pantau)",
                "Disalurkan Rp (bank / pantau)",
                "Dibelanjakan Rp (bank / pantau)",
            ],
            &rows,
        );
    }
    if !report.problems.is_empty() {
        out.push_str("<h2>Catatan: baris data yang tidak terbaca</h2><ul>");
        for p in &report.problems {
            let _ = write!(out, "<li>{}</li>", escape(p));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>");
    Ok(out)
}
