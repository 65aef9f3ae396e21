-- id: card_collection_burst
-- title: Dugaan gesek kartu KKS massal di terminal {terminal_id}
-- category: card_collection
-- severity: high
-- window: local_day
-- entity: terminal
-- owner: tim-data
-- summary: {peak_cards} kartu KKS berbeda digesek di terminal {terminal_id} milik {outlet_name} dalam {burst_minutes} menit (mulai pukul {start_hour}.00 waktu setempat), jeda median {median_gap_seconds} detik, {drained_cards} kartu dikuras habis. Normal: {district_per_30min} kartu per 30 menit per terminal di {regency_name}, {own_per_30min} di outlet ini sendiri; peluang kebetulan p = {p_value}. Periksa apakah kartu dikumpulkan oleh pendamping atau agen.
-- description: Many distinct KKS cards at one terminal within 30 minutes, far above the district's normal rate (Poisson tail), at machine-like spacing (robust coefficient of variation of the gaps, 1.4826·MAD/median, below 0.35; people arriving on their own give about 1, a queue on credit day about 0.5). The expected rate is the higher of the district's (the day's KKS purchases per active terminal per half hour of a 14-hour shop day) and the outlet's own over its active days of the past 28 days.
WITH swipes AS (
    SELECT terminal_id, outlet_id, regency_code, card_id, occurred_at, local_hour, balance_after,
           CAST(occurred_at AS BIGINT) / 1000000 AS at_s,
           -- Indonesian offsets are whole hours, so the local minute follows from the hour.
           local_hour * 60 + (CAST(occurred_at AS BIGINT) / 60000000) % 60 AS local_minute
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
gaps AS (
    SELECT terminal_id, CAST(at_s - prev_s AS DOUBLE) AS gap
    FROM in_burst
    WHERE prev_s IS NOT NULL
),
gap_center AS (
    SELECT terminal_id, median(gap) AS median_gap FROM gaps GROUP BY terminal_id
),
gap_spread AS (
    SELECT g.terminal_id, c.median_gap, median(abs(g.gap - c.median_gap)) AS mad_gap
    FROM gaps g JOIN gap_center c ON c.terminal_id = g.terminal_id
    GROUP BY g.terminal_id, c.median_gap
),
burst AS (
    SELECT b.terminal_id, b.outlet_id, b.regency_code,
           count(DISTINCT b.card_id) AS peak_cards,
           min(b.occurred_at) AS burst_start,
           max(b.occurred_at) AS burst_end,
           min(b.local_hour) AS start_hour,
           sum(CASE WHEN b.balance_after = 0 THEN 1 ELSE 0 END) AS drained_cards,
           max(g.median_gap) AS median_gap,
           -- Robust coefficient of variation of the gaps: about 1 for people arriving on
           -- their own, near 0 for a machine-like cadence, and a few ordinary customers
           -- mixed into a burst barely move it.
           max(1.4826 * g.mad_gap / greatest(g.median_gap, 1.0)) AS gap_irregularity
    FROM in_burst b
    JOIN gap_spread g ON g.terminal_id = b.terminal_id
    GROUP BY b.terminal_id, b.outlet_id, b.regency_code
),
district AS (
    SELECT regency_code,
           greatest(CAST(count(*) AS DOUBLE) / count(DISTINCT terminal_id) / 28.0, 0.5) AS district_per_30min
    FROM swipes
    GROUP BY regency_code
),
own_history AS (
    -- The outlet's own normal: KKS payments per open half hour on its active days of
    -- the past weeks (daily rollups), whatever its number of terminals.
    SELECT outlet_id, CAST(sum(kks_payments) AS DOUBLE) / count(*) / 28.0 AS own_per_30min
    FROM outlet_daily
    WHERE kks_payments > 0
    GROUP BY outlet_id
),
timeline AS (
    -- The terminal's KKS swipes of the day as local minutes, for the chart.
    SELECT terminal_id, array_agg(local_minute ORDER BY at_s) AS swipe_minutes
    FROM swipes
    WHERE terminal_id IN (SELECT terminal_id FROM burst WHERE peak_cards >= 10)
    GROUP BY terminal_id
),
scored AS (
    SELECT b.*, d.district_per_30min, h.own_per_30min,
           greatest(d.district_per_30min, coalesce(h.own_per_30min, 0.0)) AS expected_per_30min,
           poisson_sf(b.peak_cards,
                      greatest(d.district_per_30min, coalesce(h.own_per_30min, 0.0))) AS p_value
    FROM burst b
    JOIN district d ON d.regency_code = b.regency_code
    LEFT JOIN own_history h ON h.outlet_id = b.outlet_id
)
SELECT s.terminal_id AS entity_id,
       s.regency_code,
       p_score(s.p_value) AS score,
       s.terminal_id,
       s.outlet_id,
       coalesce(o.name, s.outlet_id) AS outlet_name,
       o.district_code,
       s.peak_cards,
       s.burst_start,
       s.burst_end,
       s.start_hour,
       round((CAST(s.burst_end AS BIGINT) - CAST(s.burst_start AS BIGINT)) / 60000000.0, 1) AS burst_minutes,
       round(s.median_gap, 1) AS median_gap_seconds,
       round(s.gap_irregularity, 2) AS gap_irregularity,
       s.drained_cards,
       round(s.expected_per_30min, 2) AS expected_per_30min,
       round(s.district_per_30min, 2) AS district_per_30min,
       round(s.own_per_30min, 2) AS own_per_30min,
       s.p_value,
       1e-6 AS p_threshold,
       10 AS min_cards,
       0.35 AS max_gap_irregularity,
       s.start_hour * 60 + (CAST(s.burst_start AS BIGINT) / 60000000) % 60 AS burst_start_minute,
       s.start_hour * 60 + (CAST(s.burst_start AS BIGINT) / 60000000) % 60
           + (CAST(s.burst_end AS BIGINT) - CAST(s.burst_start AS BIGINT)) / 60000000 AS burst_end_minute,
       t.swipe_minutes
FROM scored s
JOIN timeline t ON t.terminal_id = s.terminal_id
LEFT JOIN outlets o ON o.outlet_id = s.outlet_id
WHERE s.peak_cards >= 10 AND s.p_value < 1e-6 AND s.gap_irregularity < 0.35
