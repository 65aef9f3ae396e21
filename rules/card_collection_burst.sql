-- id: card_collection_burst
-- title: Dugaan gesek kartu KKS massal di terminal {terminal_id}
-- category: card_collection
-- severity: high
-- window: local_day
-- entity: terminal
-- owner: tim-data
-- summary: {peak_cards} kartu KKS berbeda digesek di terminal {terminal_id} milik {outlet_name} dalam {burst_minutes} menit (mulai pukul {start_hour}.00 waktu setempat), jeda rata-rata {mean_gap_seconds} detik, {drained_cards} kartu dikuras habis. Normal di {regency_name}: {expected_per_30min} kartu per 30 menit per terminal; peluang kebetulan p = {p_value}. Periksa apakah kartu dikumpulkan oleh pendamping atau agen.
-- description: Many distinct KKS cards at one terminal within 30 minutes, far above the district's normal rate (Poisson tail), at machine-like spacing. The district rate is the day's KKS purchases per active terminal per half hour of a 14-hour shop day.
WITH swipes AS (
    SELECT terminal_id, outlet_id, regency_code, card_id, occurred_at, local_hour, balance_after,
           CAST(occurred_at AS BIGINT) / 1000000 AS at_s
    FROM transactions
    WHERE payment = 'KKS' AND type = 'purchase'
),
rolling AS (
    SELECT terminal_id, at_s,
           count(*) OVER (PARTITION BY terminal_id ORDER BY at_s
                          RANGE BETWEEN 1799 PRECEDING AND CURRENT ROW) AS swipes_30m
    FROM swipes
),
peak AS (
    SELECT terminal_id, at_s AS peak_end_s,
           row_number() OVER (PARTITION BY terminal_id ORDER BY swipes_30m DESC, at_s) AS rn
    FROM rolling
),
in_burst AS (
    SELECT s.*, lag(s.at_s) OVER (PARTITION BY s.terminal_id ORDER BY s.at_s) AS prev_s
    FROM swipes s
    JOIN peak p ON p.terminal_id = s.terminal_id AND p.rn = 1
    WHERE s.at_s > p.peak_end_s - 1800 AND s.at_s <= p.peak_end_s
),
burst AS (
    SELECT terminal_id, outlet_id, regency_code,
           count(DISTINCT card_id) AS peak_cards,
           min(occurred_at) AS burst_start,
           max(occurred_at) AS burst_end,
           min(local_hour) AS start_hour,
           sum(CASE WHEN balance_after = 0 THEN 1 ELSE 0 END) AS drained_cards,
           avg(at_s - prev_s) AS mean_gap,
           stddev(at_s - prev_s) AS sd_gap
    FROM in_burst
    GROUP BY terminal_id, outlet_id, regency_code
),
district AS (
    SELECT regency_code,
           greatest(CAST(count(*) AS DOUBLE) / count(DISTINCT terminal_id) / 28.0, 0.5) AS expected_per_30min
    FROM swipes
    GROUP BY regency_code
),
scored AS (
    SELECT b.*, d.expected_per_30min,
           poisson_sf(b.peak_cards, d.expected_per_30min) AS p_value
    FROM burst b JOIN district d ON d.regency_code = b.regency_code
)
SELECT s.terminal_id AS entity_id,
       s.regency_code,
       least(-log10(greatest(s.p_value, 1e-300)), 300.0) AS score,
       s.terminal_id,
       s.outlet_id,
       coalesce(o.name, s.outlet_id) AS outlet_name,
       o.district_code,
       s.peak_cards,
       s.burst_start,
       s.burst_end,
       s.start_hour,
       round((CAST(s.burst_end AS BIGINT) - CAST(s.burst_start AS BIGINT)) / 60000000.0, 1) AS burst_minutes,
       round(s.mean_gap, 1) AS mean_gap_seconds,
       round(s.sd_gap / s.mean_gap, 2) AS gap_variation,
       s.drained_cards,
       round(s.expected_per_30min, 2) AS expected_per_30min,
       s.p_value,
       1e-6 AS p_threshold,
       10 AS min_cards
FROM scored s
LEFT JOIN outlets o ON o.outlet_id = s.outlet_id
WHERE s.peak_cards >= 10 AND s.p_value < 1e-6
