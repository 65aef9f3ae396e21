-- id: card_many_places
-- title: Kartu KKS dipakai di {outlets} e-Warong dalam {span_hours} jam
-- category: card_many_places
-- severity: high
-- window: local_day
-- entity: card
-- owner: tim-data
-- summary: Satu kartu KKS ({bank}) dipakai {swipes} kali di {outlets} e-Warong berbeda di {districts} kecamatan {regency_name} dalam {span_hours} jam (pukul {first_hour}.00-{last_hour}.59 waktu setempat): {outlet_names}. Di {regency_name}, hanya {switch_rate_pct}% pembayaran KKS disusul pembayaran di e-Warong lain pada hari yang sama; peluang kebetulan p = {p_value}. Kemungkinan kartu digandakan atau dikumpulkan; hubungi KPM pemilik kartu.
-- description: A card paying at several outlets within 6 hours. Under ordinary behaviour a KKS payment is followed the same day by one at another outlet with the regency's switch rate q (switches per payment, leave-one-card-out, floored at 1%); seeing at least k-1 switches after n-1 payments has probability binomial_sf(k-1, n-1, q). Fires at 3 or more distinct outlets and p < 1e-3.
WITH swipes AS (
    SELECT card_id, bank, outlet_id, regency_code, local_hour,
           CAST(occurred_at AS BIGINT) / 1000000 AS at_s
    FROM kks_purchases
),
ordered AS (
    SELECT s.*, lag(outlet_id) OVER (PARTITION BY card_id ORDER BY at_s, outlet_id) AS prev_outlet
    FROM swipes s
),
per_card AS (
    SELECT card_id, regency_code,
           count(*) AS purchases,
           sum(CASE WHEN prev_outlet IS NOT NULL AND prev_outlet <> outlet_id THEN 1 ELSE 0 END) AS switches
    FROM ordered
    GROUP BY card_id, regency_code
),
district AS (
    SELECT regency_code, sum(purchases) AS purchases, sum(switches) AS switches
    FROM per_card
    GROUP BY regency_code
),
spans AS (
    -- From each payment, the card's payments in the next 6 hours.
    SELECT a.card_id, a.bank, a.regency_code, a.at_s AS from_s,
           max(b.at_s) AS to_s,
           count(*) AS swipes,
           count(DISTINCT b.outlet_id) AS outlets,
           min(b.local_hour) AS first_hour,
           max(b.local_hour) AS last_hour
    FROM swipes a
    JOIN swipes b ON b.card_id = a.card_id AND b.at_s >= a.at_s AND b.at_s < a.at_s + 21600
    GROUP BY a.card_id, a.bank, a.regency_code, a.at_s
),
best AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.card_id ORDER BY s.outlets DESC, s.from_s) AS rn
    FROM spans s
    WHERE s.outlets >= 3
),
rated AS (
    SELECT b.*,
           greatest(others_rate(d.switches, c.switches, d.purchases, c.purchases), 0.01) AS switch_rate
    FROM best b
    JOIN per_card c ON c.card_id = b.card_id
    JOIN district d ON d.regency_code = b.regency_code
    WHERE b.rn = 1
),
scored AS (
    SELECT r.*, binomial_sf(r.outlets - 1, r.swipes - 1, r.switch_rate) AS p_value
    FROM rated r
),
places AS (
    SELECT s.card_id,
           count(DISTINCT o.district_code) AS districts,
           string_agg(DISTINCT coalesce(o.name, w.outlet_id), ', ') AS outlet_names
    FROM scored s
    JOIN swipes w ON w.card_id = s.card_id AND w.at_s >= s.from_s AND w.at_s <= s.to_s
    LEFT JOIN outlets o ON o.outlet_id = w.outlet_id
    GROUP BY s.card_id
)
SELECT s.card_id AS entity_id,
       s.regency_code,
       p_score(s.p_value) AS score,
       s.bank,
       s.swipes,
       s.outlets,
       p.districts,
       p.outlet_names,
       round((s.to_s - s.from_s) / 3600.0, 1) AS span_hours,
       s.first_hour,
       s.last_hour,
       round(100.0 * s.switch_rate, 2) AS switch_rate_pct,
       s.p_value,
       1e-3 AS p_threshold
FROM scored s
JOIN places p ON p.card_id = s.card_id
WHERE s.p_value < 1e-3
