-- id: non_transacting
-- title: Sebagian besar KPM {outlet_name} tidak bertransaksi pada periode {period}
-- category: non_transacting
-- severity: medium
-- window: local_days 100 every 7
-- entity: outlet
-- owner: tim-data
-- summary: Periode {period} telah berakhir: dari {kpm_assigned} KPM yang terdaftar di {outlet_name}, hanya {spenders} yang membelanjakan bantuannya; {non_transacting} KPM ({non_transacting_pct}%) tidak bertransaksi sama sekali. Di seluruh {regency_name}: {district_non_transacting} dari {district_credited} KPM ({district_pct}%) tidak bertransaksi. Peluang kebetulan p = {p_value}. Periksa apakah kartu KKS sudah dibagikan dan apakah e-Warong melayani KPM.
-- description: Runs weekly over 100 days of card rollups and judges the periods that ended in the window's last week. The registry's kpm_assigned minus the credited cards that spent at the outlet between their credit and the period's end gives its non-transacting KPM; tested with a binomial tail against the rate of the regency's other outlets (floored at 1%). Fires at p < 1e-6 when at least 30% of the outlet's KPM did not transact. The regency-wide count (credited cards with no spending at all, the Dinas Sosial's monthly figure) is in the evidence.
WITH due AS (
    SELECT * FROM period_credits
    WHERE CAST(period_end AS INT) > CAST(window_end_date AS INT) - 7
      AND CAST(period_end AS INT) <= CAST(window_end_date AS INT)
),
spending AS (
    SELECT d.card_id, d.regency_code, d.period, c.outlet_id, sum(c.spent) AS spent
    FROM due d
    JOIN card_daily c ON c.card_id = d.card_id
     AND c.local_date >= d.credit_date AND c.local_date < d.period_end
     AND c.outlet_id IS NOT NULL
    GROUP BY d.card_id, d.regency_code, d.period, c.outlet_id
),
card_totals AS (
    SELECT card_id, sum(spent) AS spent FROM spending GROUP BY card_id
),
district AS (
    SELECT d.regency_code, d.period,
           count(*) AS credited,
           sum(CASE WHEN coalesce(t.spent, 0) <= 0 THEN 1 ELSE 0 END) AS non_transacting
    FROM due d
    LEFT JOIN card_totals t ON t.card_id = d.card_id
    GROUP BY d.regency_code, d.period
),
outlet_spenders AS (
    SELECT outlet_id, period, count(DISTINCT card_id) AS spenders
    FROM spending
    WHERE spent > 0
    GROUP BY outlet_id, period
),
per_outlet AS (
    SELECT o.outlet_id, o.name AS outlet_name, o.district_code, o.regency_code, d.period,
           o.kpm_assigned,
           coalesce(s.spenders, 0) AS spenders,
           greatest(o.kpm_assigned - coalesce(s.spenders, 0), 0) AS non_transacting,
           d.credited AS district_credited,
           d.non_transacting AS district_non_transacting
    FROM outlets o
    JOIN district d ON d.regency_code = o.regency_code
    LEFT JOIN outlet_spenders s ON s.outlet_id = o.outlet_id AND s.period = d.period
    WHERE o.status = 'active' AND o.kpm_assigned > 0
),
district_outlets AS (
    SELECT regency_code, period, sum(kpm_assigned) AS kpm, sum(non_transacting) AS non_transacting
    FROM per_outlet
    GROUP BY regency_code, period
),
rated AS (
    SELECT p.*,
           CAST(p.non_transacting AS DOUBLE) / p.kpm_assigned AS share,
           greatest(others_rate(x.non_transacting, p.non_transacting, x.kpm, p.kpm_assigned), 0.01)
               AS peer_rate
    FROM per_outlet p
    JOIN district_outlets x ON x.regency_code = p.regency_code AND x.period = p.period
),
scored AS (
    SELECT r.*, binomial_sf(r.non_transacting, r.kpm_assigned, r.peer_rate) AS p_value
    FROM rated r
)
SELECT s.outlet_id AS entity_id,
       s.regency_code,
       p_score(s.p_value) AS score,
       s.outlet_id,
       s.outlet_name,
       s.district_code,
       s.period,
       s.kpm_assigned,
       s.spenders,
       s.non_transacting,
       round(100.0 * s.share, 1) AS non_transacting_pct,
       round(100.0 * s.peer_rate, 1) AS peer_pct,
       s.district_credited,
       s.district_non_transacting,
       round(100.0 * s.district_non_transacting / s.district_credited, 1) AS district_pct,
       s.p_value,
       1e-6 AS p_threshold,
       0.3 AS share_threshold
FROM scored s
WHERE s.p_value < 1e-6 AND s.share >= 0.3
