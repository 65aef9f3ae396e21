-- id: seasonal_outlet
-- title: {outlet_name} hanya buka saat bantuan cair
-- category: seasonal_outlet
-- severity: high
-- window: local_days 56 every 28
-- entity: outlet
-- owner: tim-data
-- summary: Dalam {observed_days} hari, {outlet_name} aktif {active_days} hari dan {active_in_benefit} di antaranya jatuh pada {benefit_days} hari setelah pencairan {bank} (yang hanya mencakup {expected_share} dari seluruh hari); pembeli umum (DEBIT/QRIS): {ordinary_payments} transaksi. E-Warong lain di {regency_name} aktif {peer_active_days} hari dengan {peer_benefit_share} hari aktifnya dalam masa pencairan. Peluang kebetulan p = {p_value}. Kunjungi untuk memastikan toko benar-benar beroperasi.
-- description: Share of an outlet's active days that fall within 8 days of its bank's credit dates in its regency, tested with a binomial tail against the share of days those windows cover. Reads the daily rollups, never raw events. Outlets missing from the registry are not judged (their bank is unknown).
WITH credit_days AS (
    SELECT regency_code, bank, local_date AS credit_date
    FROM disbursement_daily
    WHERE cards_credited >= 5
),
observed AS (
    SELECT DISTINCT regency_code, local_date FROM outlet_daily
),
coverage AS (
    SELECT regency_code, count(*) AS observed_days FROM observed GROUP BY regency_code
),
benefit_days AS (
    SELECT DISTINCT c.regency_code, c.bank, d.local_date
    FROM credit_days c
    JOIN observed d ON d.regency_code = c.regency_code
     AND CAST(d.local_date AS INT) BETWEEN CAST(c.credit_date AS INT) AND CAST(c.credit_date AS INT) + 7
),
benefit_share AS (
    SELECT regency_code, bank, count(*) AS benefit_days FROM benefit_days GROUP BY regency_code, bank
),
active AS (
    SELECT d.outlet_id, d.regency_code, o.bank, d.local_date, d.kks_payments, d.ordinary_payments
    FROM outlet_daily d
    JOIN outlets o ON o.outlet_id = d.outlet_id
    WHERE d.kks_payments + d.ordinary_payments > 0
),
per_outlet AS (
    SELECT a.outlet_id, a.regency_code, a.bank,
           count(*) AS active_days,
           sum(CASE WHEN b.local_date IS NOT NULL THEN 1 ELSE 0 END) AS active_in_benefit,
           sum(a.kks_payments) AS kks_payments,
           sum(a.ordinary_payments) AS ordinary_payments
    FROM active a
    LEFT JOIN benefit_days b
      ON b.regency_code = a.regency_code AND b.bank = a.bank AND b.local_date = a.local_date
    GROUP BY a.outlet_id, a.regency_code, a.bank
),
scored AS (
    SELECT p.*, c.observed_days, s.benefit_days,
           CAST(s.benefit_days AS DOUBLE) / c.observed_days AS expected_share,
           CAST(p.active_in_benefit AS DOUBLE) / p.active_days AS benefit_share,
           binomial_sf(p.active_in_benefit, p.active_days,
                       CAST(s.benefit_days AS DOUBLE) / c.observed_days) AS p_value
    FROM per_outlet p
    JOIN coverage c ON c.regency_code = p.regency_code
    JOIN benefit_share s ON s.regency_code = p.regency_code AND s.bank = p.bank
),
peers AS (
    SELECT regency_code,
           median(benefit_share) AS peer_benefit_share,
           median(active_days) AS peer_active_days
    FROM scored
    GROUP BY regency_code
)
SELECT s.outlet_id AS entity_id,
       s.regency_code,
       p_score(s.p_value) AS score,
       s.outlet_id,
       coalesce(o.name, s.outlet_id) AS outlet_name,
       o.district_code,
       s.bank,
       s.observed_days,
       s.active_days,
       s.active_in_benefit,
       s.benefit_days,
       round(s.expected_share, 3) AS expected_share,
       round(s.benefit_share, 3) AS benefit_share,
       s.kks_payments,
       s.ordinary_payments,
       round(p.peer_benefit_share, 3) AS peer_benefit_share,
       CAST(p.peer_active_days AS BIGINT) AS peer_active_days,
       s.p_value,
       1e-6 AS p_threshold
FROM scored s
JOIN peers p ON p.regency_code = s.regency_code
LEFT JOIN outlets o ON o.outlet_id = s.outlet_id
WHERE s.active_days >= 5 AND s.p_value < 1e-6 AND p.peer_benefit_share < 0.6
