#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/ from the panel lists below.

Run it after changing a panel: `python3 scripts/dashboards.py`. The JSON it writes is
what Grafana provisions and what the end-to-end tests query (every PromQL expression
against a real Prometheus, every SQL query against a real PostgreSQL), so review the
diff of dashboards/*.json like code.

The program dashboards (overview, district) are for the monitoring team of a Dinas
Sosial and are titled in Bahasa Indonesia; the pipeline-health dashboard is for whoever
runs pantau and is in English, like the logs and the metric help texts.
"""

import json
import pathlib

PROM = {"type": "prometheus", "uid": "prometheus"}
STORE = {"type": "grafana-postgresql-datasource", "uid": "pantau-store"}

# Names and provinces come from pantau_regency_info; `max by` keeps the join one-to-one
# when several pantau instances publish the same regency's info.
INFO = "max by (regency, name, province) (pantau_regency_info)"
INFO_IN_PROVINCE = 'max by (regency, name, province) (pantau_regency_info{province=~"$province"})'


def named(expr, info=INFO_IN_PROVINCE):
    """Adds name and province to a per-regency series, keeping only the chosen provinces."""
    return f"({expr}) * on (regency) group_left (name, province) {info}"


def prom(expr, legend="", instant=False, fmt="time_series"):
    target = {"datasource": PROM, "expr": expr, "legendFormat": legend, "range": not instant,
              "instant": instant, "format": fmt}
    return target


def sql(query, fmt="table"):
    return {"datasource": STORE, "rawSql": query.strip(), "format": fmt, "rawQuery": True,
            "editorMode": "code"}


class Layout:
    """Places panels left to right in rows of 24 columns."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def panel(self, kind, title, description, targets, w=12, h=8, unit=None, options=None,
              field_overrides=None, transformations=None):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        refs = "ABCDEFGH"
        for i, t in enumerate(targets):
            t["refId"] = refs[i]
        defaults = {}
        if unit:
            defaults["unit"] = unit
        panel = {
            "id": self.next_id,
            "type": kind,
            "title": title,
            "description": description,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "datasource": targets[0]["datasource"],
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": field_overrides or []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        return panel


def dashboard(uid, title, description, panels, variables, time_from="now-24h", links=()):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["pantau"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "links": list(links),
        "panels": panels,
    }


def prom_variable(name, label, query, include_all=True):
    return {
        "name": name, "label": label, "type": "query", "datasource": PROM,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query, "refresh": 2, "sort": 1, "multi": include_all,
        "includeAll": include_all, "allValue": ".*" if include_all else None,
    }


def sql_variable(name, label, query, hide=0):
    return {
        "name": name, "label": label, "type": "query", "datasource": STORE,
        "query": query.strip(), "definition": query.strip(), "refresh": 1, "sort": 0,
        "multi": False, "includeAll": False, "hide": hide,
    }


TABLE_SORT_DESC = {"showHeader": True, "cellHeight": "sm"}


def overview():
    L = Layout()
    credited = named("pantau_kpm_credited")
    severe = named('sum by (regency) (increase(pantau_alerts_total{severity=~"high|critical"}[$__range]))')
    spending = named("pantau_kpm_spending")
    panels = [
        L.panel("stat", "Realisasi (provinsi terpilih)",
                "Bagian KPM yang sudah membelanjakan bantuan periode berjalan, dari semua KPM yang menerima pencairan, di kabupaten/kota provinsi terpilih.",
                [prom(f"sum({spending}) / sum({credited})", instant=True)], w=6, h=5,
                unit="percentunit"),
        L.panel("stat", "KPM menerima bantuan periode berjalan", "Jumlah kartu KKS yang dicairkan untuk periode berjalan.",
                [prom(f"sum({credited})", instant=True)], w=6, h=5, unit="short"),
        L.panel("stat", "KPM sudah berbelanja", "KPM periode berjalan yang sudah bertransaksi sejak pencairan.",
                [prom(f"sum({spending})", instant=True)], w=6, h=5, unit="short"),
        L.panel("stat", "Peringatan dalam rentang waktu", "Peringatan yang dikirim ke Tikor dalam rentang waktu dasbor.",
                [prom(f"sum({named('sum by (regency) (increase(pantau_alerts_total[$__range]))')})", instant=True)],
                w=6, h=5, unit="short"),
        L.panel("bargauge", "Realisasi per kabupaten/kota",
                "Realisasi periode berjalan tiap kabupaten/kota, dari yang terendah. Kabupaten/kota di bawah 70% menjelang akhir periode perlu ditindaklanjuti.",
                [prom(f"sort(max by (name) ({named('pantau_realization_ratio')}))", legend="{{name}}", instant=True)],
                w=12, h=12, unit="percentunit",
                options={"orientation": "horizontal", "displayMode": "gradient", "minVizHeight": 10,
                         "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}),
        L.panel("table", "Daerah yang perlu perhatian",
                "Kabupaten/kota dengan peringatan tingkat tinggi atau kritis terbanyak dalam rentang waktu, dengan realisasinya. Buka dasbor kabupaten/kota untuk daftar e-Warong yang perlu dikunjungi.",
                [prom(f"topk(15, sum by (regency, name) ({severe}))",
                      instant=True, fmt="table"),
                 prom(f"max by (regency, name) ({named('pantau_realization_ratio')})", instant=True, fmt="table")],
                w=12, h=12,
                transformations=[{"id": "merge", "options": {}},
                                 {"id": "organize", "options": {
                                     "excludeByName": {"Time": True},
                                     "renameByName": {"regency": "Kode", "name": "Kabupaten/kota",
                                                      "Value #A": "Peringatan tinggi/kritis",
                                                      "Value #B": "Realisasi"}}},
                                 {"id": "filterByValue", "options": {
                                     "filters": [{"fieldName": "Peringatan tinggi/kritis",
                                                  "config": {"id": "isNull", "options": {}}}],
                                     "match": "any", "type": "exclude"}},
                                 {"id": "sortBy", "options": {"sort": [{"field": "Peringatan tinggi/kritis", "desc": True}]}}],
                field_overrides=[{"matcher": {"id": "byName", "options": "Realisasi"},
                                  "properties": [{"id": "unit", "value": "percentunit"}]}],
                options=TABLE_SORT_DESC),
        L.panel("timeseries", "Peringatan per kategori",
                "Peringatan yang dikirim per kategori pola (harga, takaran, kartu dikumpulkan, e-Warong musiman, pemasok, administrasi, KPM tidak bertransaksi, realisasi).",
                [prom(f"sum by (category) ({named('sum by (regency, category) (increase(pantau_alerts_total[$__rate_interval]))')})",
                      legend="{{category}}")], w=12, h=9, unit="short",
                options={"legend": {"displayMode": "table", "placement": "right"}}),
        L.panel("table", "Peringatan per kabupaten/kota dan kategori",
                "Jumlah peringatan dalam rentang waktu, per kabupaten/kota dan kategori.",
                [prom(f"sum by (name, category) ({named('sum by (regency, category) (increase(pantau_alerts_total[$__range]))')}) > 0",
                      instant=True, fmt="table")], w=12, h=9,
                transformations=[{"id": "organize", "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {"name": "Kabupaten/kota", "category": "Kategori", "Value": "Peringatan"}}}],
                options=TABLE_SORT_DESC),
        L.panel("timeseries", "Harga per komoditas",
                "Rata-rata median harga satuan penjualan KKS per komoditas di kabupaten/kota provinsi terpilih (hari terakhir yang sudah ditutup).",
                [prom(f"avg by (commodity, unit) ({named('pantau_unit_price_median_rupiah')})",
                      legend="{{commodity}} (Rp/{{unit}})")], w=12, h=9, unit="currencyIDR"),
        L.panel("timeseries", "Belanja per jenis pembayaran",
                "Rupiah pembelian per jenis pembayaran: KKS (bantuan) dan pelanggan biasa (DEBIT, QRIS). e-Warong yang hanya melayani KKS adalah salah satu tanda e-Warong musiman.",
                [prom(f"sum by (payment) ({named('sum by (regency, payment) (increase(pantau_purchase_rupiah_total[$__rate_interval]))')})",
                      legend="{{payment}}")], w=12, h=9, unit="currencyIDR"),
    ]
    variables = [prom_variable("province", "Provinsi", "label_values(pantau_regency_info, province)")]
    return dashboard("pantau-overview", "pantau: Ringkasan program",
                     "Realisasi, peringatan dan harga Program Sembako per kabupaten/kota.",
                     panels, variables,
                     links=[{"title": "Kabupaten/kota", "type": "link", "url": "/d/pantau-district"},
                            {"title": "Kesehatan pipeline", "type": "link", "url": "/d/pantau-pipeline"}])


OUTLETS_TO_VISIT = """
WITH recent AS (
    SELECT * FROM alerts
    WHERE regency_code = '$regency' AND outlet_id IS NOT NULL AND $__timeFilter(detected_at)
),
per_outlet AS (
    SELECT outlet_id, count(*) AS alerts, string_agg(DISTINCT category, ', ') AS categories,
           max(severity_rank) AS worst
    FROM recent
    GROUP BY outlet_id
),
latest AS (
    SELECT DISTINCT ON (outlet_id) outlet_id, window_end, title, summary, evidence
    FROM recent
    ORDER BY outlet_id, window_end DESC, severity_rank DESC
)
SELECT p.outlet_id AS "ID e-Warong",
       coalesce(o.name, p.outlet_id) AS "e-Warong",
       coalesce(d.name, '-') AS "Kecamatan",
       p.alerts AS "Peringatan",
       p.categories AS "Kategori",
       CASE p.worst WHEN 4 THEN 'kritis' WHEN 3 THEN 'tinggi' WHEN 2 THEN 'sedang' ELSE 'rendah' END AS "Tingkat tertinggi",
       l.window_end AS "Kejadian terakhir",
       l.title AS "Peringatan terakhir",
       l.summary AS "Ringkasan",
       l.evidence::text AS "Bukti"
FROM per_outlet p
JOIN latest l USING (outlet_id)
LEFT JOIN outlets o USING (outlet_id)
LEFT JOIN districts d ON d.district_code = o.district_code
ORDER BY p.worst DESC, p.alerts DESC, l.window_end DESC
LIMIT 100
"""

ALERTS_BY_CATEGORY = """
SELECT $__timeGroupAlias(detected_at, '1h'), category AS metric, count(*) AS value
FROM alerts
WHERE regency_code = '$regency' AND $__timeFilter(detected_at)
GROUP BY 1, 2
ORDER BY 1
"""

LATEST_ALERTS = """
SELECT window_end AS "Kejadian",
       CASE severity_rank WHEN 4 THEN 'kritis' WHEN 3 THEN 'tinggi' WHEN 2 THEN 'sedang' ELSE 'rendah' END AS "Tingkat",
       category AS "Kategori",
       entity_type || ' ' || entity_id AS "Tentang",
       title AS "Peringatan",
       summary AS "Ringkasan",
       evidence::text AS "Bukti"
FROM alerts
WHERE regency_code = '$regency' AND $__timeFilter(detected_at)
ORDER BY window_end DESC, severity_rank DESC
LIMIT 200
"""


def district():
    L = Layout()
    here = 'regency="$regency"'
    province = 'regency=~"$province_code.."'
    panels = [
        L.panel("stat", "Realisasi periode berjalan", "KPM yang sudah berbelanja dibagi KPM yang menerima pencairan periode berjalan.",
                [prom(f"max(pantau_realization_ratio{{{here}}})", instant=True)], w=6, h=5, unit="percentunit"),
        L.panel("stat", "KPM menerima / sudah berbelanja", "Kartu KKS yang dicairkan periode berjalan, dan yang sudah bertransaksi sejak pencairan.",
                [prom(f"max(pantau_kpm_credited{{{here}}})", legend="menerima", instant=True),
                 prom(f"max(pantau_kpm_spending{{{here}}})", legend="berbelanja", instant=True)],
                w=6, h=5, unit="short"),
        L.panel("stat", "Bantuan dicairkan / dibelanjakan", "Rupiah bantuan periode berjalan yang dicairkan, dan yang sudah dibelanjakan.",
                [prom(f"max(pantau_benefit_credited_rupiah{{{here}}})", legend="dicairkan", instant=True),
                 prom(f"max(pantau_benefit_spent_rupiah{{{here}}})", legend="dibelanjakan", instant=True)],
                w=6, h=5, unit="currencyIDR"),
        L.panel("stat", "Peringatan dalam rentang waktu", "Peringatan untuk kabupaten/kota ini yang dikirim ke Tikor dalam rentang waktu dasbor.",
                [prom(f"sum(increase(pantau_alerts_total{{{here}}}[$__range]))", instant=True)], w=6, h=5, unit="short"),
        L.panel("timeseries", "Kurva realisasi",
                "Realisasi periode berjalan dari hari ke hari; garis baru dimulai saat periode baru dicairkan.",
                [prom(f"max by (period) (pantau_realization_ratio{{{here}}})", legend="periode {{period}}")],
                w=12, h=9, unit="percentunit"),
        L.panel("timeseries", "Peringatan per kategori",
                "Peringatan per jam menurut kategori, dari penyimpanan peringatan pantau.",
                [sql(ALERTS_BY_CATEGORY, fmt="time_series")], w=12, h=9, unit="short",
                options={"legend": {"displayMode": "list", "placement": "bottom"}}),
        L.panel("timeseries", "Harga dibanding provinsi",
                "Median harga satuan penjualan KKS di kabupaten/kota ini, dan rata-rata median kabupaten/kota di provinsinya.",
                [prom(f"max by (commodity, unit) (pantau_unit_price_median_rupiah{{{here}}})",
                      legend="{{commodity}} di sini (Rp/{{unit}})"),
                 prom(f"avg by (commodity, unit) (pantau_unit_price_median_rupiah{{{province}}})",
                      legend="{{commodity}} provinsi (Rp/{{unit}})")], w=12, h=9, unit="currencyIDR"),
        L.panel("bargauge", "Harga terhadap provinsi",
                "Median harga di sini dibagi rata-rata median provinsi, per komoditas: di atas 1,2 berarti lebih dari 20% lebih mahal.",
                [prom(f"max by (commodity, unit) (pantau_unit_price_median_rupiah{{{here}}}) / on (commodity, unit) avg by (commodity, unit) (pantau_unit_price_median_rupiah{{{province}}})",
                      legend="{{commodity}}", instant=True)], w=12, h=9, unit="none",
                options={"orientation": "horizontal", "displayMode": "basic",
                         "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}),
        L.panel("table", "e-Warong yang perlu dikunjungi",
                "e-Warong dengan peringatan dalam rentang waktu, yang paling parah dahulu: jumlah dan kategori peringatan, peringatan terakhir beserta ringkasan dan bukti angkanya.",
                [sql(OUTLETS_TO_VISIT)], w=24, h=12, options=TABLE_SORT_DESC),
        L.panel("table", "Peringatan terbaru",
                "Semua peringatan kabupaten/kota ini dalam rentang waktu, termasuk yang menyangkut kartu (KKS, tersamarkan) dan kabupaten/kota, dengan bukti angkanya.",
                [sql(LATEST_ALERTS)], w=24, h=12, options=TABLE_SORT_DESC),
    ]
    variables = [
        sql_variable("regency", "Kabupaten/kota", """
SELECT regency_code AS __value, name || ' (' || province || ')' AS __text
FROM regencies
WHERE regency_code IN (SELECT DISTINCT regency_code FROM outlets)
ORDER BY province, name
"""),
        sql_variable("province_code", "Kode provinsi",
                     "SELECT province_code FROM regencies WHERE regency_code = '$regency'", hide=2),
    ]
    return dashboard("pantau-district", "pantau: Kabupaten/kota",
                     "Satu kabupaten/kota: peringatan, realisasi, harga dan e-Warong yang perlu dikunjungi.",
                     panels, variables, time_from="now-7d",
                     links=[{"title": "Ringkasan program", "type": "link", "url": "/d/pantau-overview"}])


def pipeline():
    L = Layout()

    def p95(metric, by):
        return f"histogram_quantile(0.95, sum by ({by}, le) (rate({metric}_bucket[$__rate_interval])))"

    panels = [
        L.panel("stat", "Broker reachable", "1 while pantau reaches Kafka (pantau_broker_up); 0 during an outage, when /health answers 503.",
                [prom("min(pantau_broker_up)", instant=True)], w=6, h=4,
                options={"colorMode": "background"}),
        L.panel("stat", "Targets up", "Prometheus scrape targets answering (pantau and pantau store).",
                [prom('sum(up{job=~"pantau.*"})', instant=True)], w=6, h=4),
        L.panel("stat", "Alert produce errors", "Alerts or dead letters the broker refused in the time range; should be 0.",
                [prom("sum(increase(pantau_alert_produce_errors_total[$__range]))", instant=True)], w=6, h=4),
        L.panel("stat", "Rules loaded", "Rules running, by mode.",
                [prom("sum by (mode) (pantau_rules_loaded)", legend="{{mode}}", instant=True)], w=6, h=4),
        L.panel("timeseries", "Records consumed", "Input records read per second, by topic.",
                [prom("sum by (topic) (rate(pantau_records_consumed_total[$__rate_interval]))", legend="{{topic}}")],
                w=12, h=8, unit="reqps"),
        L.panel("timeseries", "Consumer lag", "Records in the broker not yet read, by topic (summed over partitions).",
                [prom("sum by (topic) (pantau_consumer_lag_records)", legend="{{topic}}")], w=12, h=8, unit="short"),
        L.panel("timeseries", "Watermark delay", "Wall-clock time minus how far each input topic has got in event time; and the engine's watermark, which closes windows.",
                [prom("max by (topic) (pantau_topic_watermark_lag_seconds)", legend="{{topic}}"),
                 prom("max(pantau_watermark_lag_seconds)", legend="engine watermark")], w=12, h=8, unit="s"),
        L.panel("timeseries", "Dead letters and late records", "Records sent to pantau.dlq per second by topic and reason, and records behind the watermark.",
                [prom("sum by (topic, reason) (rate(pantau_dlq_records_total[$__rate_interval]))", legend="dlq {{topic}} {{reason}}"),
                 prom("sum by (topic) (rate(pantau_late_records_total[$__rate_interval]))", legend="late {{topic}}")],
                w=12, h=8, unit="reqps"),
        L.panel("timeseries", "Rule evaluation time (p95)", "95th percentile of one rule's evaluation over one window, by rule (figures:* are the dashboards' own figures).",
                [prom(p95("pantau_rule_eval_seconds", "rule"), legend="{{rule}}")], w=12, h=8, unit="s"),
        L.panel("timeseries", "Window close and batch decode time (p95)", "95th percentile of closing one window (rollups and rules included), by window, and of decoding one batch, by topic.",
                [prom(p95("pantau_window_close_seconds", "window"), legend="close {{window}}"),
                 prom(p95("pantau_batch_decode_seconds", "topic"), legend="decode {{topic}}")], w=12, h=8, unit="s"),
        L.panel("timeseries", "Alerts produced", "Alerts produced per second by category; shadow-mode alerts (pantau.alerts.shadow) apart.",
                [prom("sum by (category) (rate(pantau_alerts_total[$__rate_interval]))", legend="{{category}}"),
                 prom("sum(rate(pantau_shadow_alerts_total[$__rate_interval]))", legend="shadow")], w=12, h=8, unit="reqps"),
        L.panel("table", "Rule reloads, failures and suppressions", "In the time range: rule changes applied or refused, rules skipped for a window (error or timeout), detections held back (cooldown or snooze).",
                [prom("sum by (outcome) (increase(pantau_rule_reloads_total[$__range]))", instant=True, fmt="table"),
                 prom("sum by (rule, reason) (increase(pantau_rule_failures_total[$__range]))", instant=True, fmt="table"),
                 prom("sum by (rule, reason) (increase(pantau_alerts_suppressed_total[$__range]))", instant=True, fmt="table")],
                w=12, h=8),
        L.panel("timeseries", "Alert store", "Rows pantau store writes to PostgreSQL per second, and its failed writes.",
                [prom("sum by (table) (rate(pantau_store_rows_total[$__rate_interval]))", legend="{{table}}"),
                 prom('sum(rate(pantau_store_errors_total{job="pantau-store"}[$__rate_interval]))', legend="errors")],
                w=12, h=8, unit="reqps"),
        L.panel("timeseries", "State", "Raw rows held for open windows, checkpoints written, and input partitions paused (memory: the engines hold --max-buffered-rows while the watermark waits; engines_behind: the router is two batches ahead).",
                [prom("sum(pantau_buffered_rows)", legend="buffered rows"),
                 prom("sum(increase(pantau_checkpoints_total[$__rate_interval]))", legend="checkpoints"),
                 prom("sum by (reason) (pantau_input_partitions_paused)", legend="paused inputs ({{reason}})")],
                w=12, h=8, unit="short"),
    ]
    return dashboard("pantau-pipeline", "pantau: Pipeline health",
                     "Is pantau keeping up, and is anything lost or late?", panels, [], time_from="now-6h",
                     links=[{"title": "Program overview", "type": "link", "url": "/d/pantau-overview"}])


def main():
    out = pathlib.Path(__file__).resolve().parent.parent / "dashboards"
    for name, board in [("overview", overview()), ("district", district()), ("pipeline", pipeline())]:
        path = out / f"pantau-{name}.json"
        path.write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
