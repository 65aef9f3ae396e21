-- id: card_collection_burst
-- title: Dugaan gesek kartu KKS massal di terminal {terminal_id}
-- category: card_collection
-- severity: high
-- window: local_day
-- entity: terminal
-- owner: tim-data
-- summary: {peak_cards} kartu KKS berbeda digesek di terminal {terminal_id} milik {outlet_name} dalam {burst_minutes} menit (mulai pukul {start_hour}.00 waktu setempat), jeda median {median_gap_seconds} detik. Tanda pengumpulan kartu: {collector_signs}. Normal: {district_per_30min} kartu per 30 menit per terminal di {regency_name}, {own_per_30min} di outlet ini sendiri; peluang kebetulan p = {p_value}. Periksa apakah kartu dikumpulkan oleh pendamping atau agen.
-- description: Many distinct KKS cards at one terminal within 30 minutes, far above the district's normal rate (Poisson tail), at regular spacing (robust coefficient of variation of the gaps, 1.4826·MAD/median, below 0.35; people arriving on their own give about 1), and with at least two of the traces a collector leaves that a credit-day queue does not: a machine-like cadence (below 0.15; a queue served by hand gives about 0.3), 80% or more of the run's cards drained to zero (a queue's KPM often keep a balance for a second trip), swipes at night (from 20.00 to before 06.00 local time), or cards whose recent purchases (card_daily, the past 28 days) were all at other outlets (half or more). The expected rate is the higher of the district's (the day's KKS purchases per active terminal per half hour of a 14-hour shop day) and the outlet's own over its active days of the past 28 days.
WITH swipes AS (
    SELECT terminal_id, outlet_id, regency_code, card_id, occurred_at, local_hour, balance_after,
           CAST(occurred_at AS BIGINT) / 1000000 AS at_s,
           -- Indonesian offsets are whole hours, so the local minute follows from the hour.
           local_hour * 60 + (CAST(occurred_at AS BIGINT) / 60000000) % 60 AS local_minute
    FROM transactions
    WHERE payment = 'KKS' AND type = 'purchase'
),
paced AS (
    SELECT s.*, s.at_s - lag(s.at_s) OVER (PARTITION BY s.terminal_id ORDER BY s.at_s) AS since_prev
    FROM swipes s
),
runs AS (
    -- A run is a stretch of swipes without a 5-minute pause: a morning queue and a night
    -- burst at the same terminal are judged apart, and one cannot hide the other.
    SELECT p.*,
           sum(CASE WHEN p.since_prev IS NULL OR p.since_prev > 300 THEN 1 ELSE 0 END)
               OVER (PARTITION BY p.terminal_id ORDER BY p.at_s ROWS UNBOUNDED PRECEDING) AS run_id
    FROM paced p
),
rolling AS (
    SELECT terminal_id, run_id, at_s,
           count(*) OVER (PARTITION BY terminal_id, run_id ORDER BY at_s
                          RANGE BETWEEN 1799 PRECEDING AND CURRENT ROW) AS swipes_30m
    FROM runs
),
peak AS (
    SELECT terminal_id, run_id, at_s AS peak_end_s, swipes_30m,
           row_number() OVER (PARTITION BY terminal_id, run_id ORDER BY swipes_30m DESC, at_s) AS rn
    FROM rolling
),
in_burst AS (
    SELECT s.*, lag(s.at_s) OVER (PARTITION BY s.terminal_id, s.run_id ORDER BY s.at_s) AS prev_s
    FROM runs s
    JOIN peak p ON p.terminal_id = s.terminal_id AND p.run_id = s.run_id
               AND p.rn = 1 AND p.swipes_30m >= 10
    WHERE s.at_s > p.peak_end_s - 1800 AND s.at_s <= p.peak_end_s
),
gaps AS (
    SELECT terminal_id, run_id, CAST(at_s - prev_s AS DOUBLE) AS gap
    FROM in_burst
    WHERE prev_s IS NOT NULL
),
gap_center AS (
    SELECT terminal_id, run_id, median(gap) AS median_gap FROM gaps GROUP BY terminal_id, run_id
),
gap_spread AS (
    SELECT g.terminal_id, g.run_id, c.median_gap, median(abs(g.gap - c.median_gap)) AS mad_gap
    FROM gaps g JOIN gap_center c ON c.terminal_id = g.terminal_id AND c.run_id = g.run_id
    GROUP BY g.terminal_id, g.run_id, c.median_gap
),
burst AS (
    SELECT b.terminal_id, b.run_id, b.outlet_id, b.regency_code,
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
    JOIN gap_spread g ON g.terminal_id = b.terminal_id AND g.run_id = b.run_id
    GROUP BY b.terminal_id, b.run_id, b.outlet_id, b.regency_code
),
burst_cards AS (
    SELECT DISTINCT terminal_id, run_id, outlet_id, card_id FROM in_burst
),
card_homes AS (
    -- Where each card of the burst bought in the past weeks; a card with no purchase
    -- then tells nothing either way.
    SELECT b.terminal_id, b.run_id, b.card_id,
           sum(CASE WHEN c.outlet_id = b.outlet_id THEN 1 ELSE 0 END) AS days_here
    FROM burst_cards b
    JOIN card_daily c ON c.card_id = b.card_id AND c.outlet_id IS NOT NULL
    GROUP BY b.terminal_id, b.run_id, b.card_id
),
outsiders AS (
    SELECT terminal_id, run_id, sum(CASE WHEN days_here = 0 THEN 1 ELSE 0 END) AS outsider_cards
    FROM card_homes
    GROUP BY terminal_id, run_id
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
           coalesce(x.outsider_cards, 0) AS outsider_cards,
           greatest(d.district_per_30min, coalesce(h.own_per_30min, 0.0)) AS expected_per_30min,
           poisson_sf(b.peak_cards,
                      greatest(d.district_per_30min, coalesce(h.own_per_30min, 0.0))) AS p_value
    FROM burst b
    JOIN district d ON d.regency_code = b.regency_code
    LEFT JOIN own_history h ON h.outlet_id = b.outlet_id
    LEFT JOIN outsiders x ON x.terminal_id = b.terminal_id AND x.run_id = b.run_id
),
traced AS (
    SELECT s.*,
           s.gap_irregularity < 0.15 AS machine_cadence,
           s.drained_cards >= 0.8 * s.peak_cards AS drained_in_sequence,
           s.start_hour >= 20 OR s.start_hour < 6 AS at_night,
           2 * s.outsider_cards >= s.peak_cards AS cards_from_elsewhere
    FROM scored s
),
passing AS (
    -- The most improbable run of the terminal's day that shows a collector's traces.
    SELECT s.*,
           row_number() OVER (PARTITION BY s.terminal_id ORDER BY s.p_value, s.burst_start) AS rn
    FROM traced s
    WHERE s.peak_cards >= 10 AND s.p_value < 1e-6 AND s.gap_irregularity < 0.35
      AND CAST(s.machine_cadence AS INT) + CAST(s.drained_in_sequence AS INT)
          + CAST(s.at_night AS INT) + CAST(s.cards_from_elsewhere AS INT) >= 2
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
       s.outsider_cards,
       concat_ws('; ',
                 CASE WHEN s.machine_cadence THEN 'jeda antar-gesekan serapi mesin' END,
                 CASE WHEN s.drained_in_sequence THEN s.drained_cards || ' kartu dikuras habis berurutan' END,
                 CASE WHEN s.at_night THEN 'digesek pada malam hari' END,
                 CASE WHEN s.cards_from_elsewhere THEN s.outsider_cards || ' kartu biasa belanja di e-Warong lain' END)
           AS collector_signs,
       round(s.expected_per_30min, 2) AS expected_per_30min,
       round(s.district_per_30min, 2) AS district_per_30min,
       round(s.own_per_30min, 2) AS own_per_30min,
       s.p_value,
       1e-6 AS p_threshold,
       10 AS min_cards,
       0.35 AS max_gap_irregularity,
       2 AS min_collector_signs,
       s.start_hour * 60 + (CAST(s.burst_start AS BIGINT) / 60000000) % 60 AS burst_start_minute,
       s.start_hour * 60 + (CAST(s.burst_start AS BIGINT) / 60000000) % 60
           + (CAST(s.burst_end AS BIGINT) - CAST(s.burst_start AS BIGINT)) / 60000000 AS burst_end_minute,
       t.swipe_minutes
FROM passing s
JOIN timeline t ON t.terminal_id = s.terminal_id
LEFT JOIN outlets o ON o.outlet_id = s.outlet_id
WHERE s.rn = 1
