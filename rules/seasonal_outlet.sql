-- id: seasonal_outlet
-- title: {outlet_name} hanya buka saat bantuan cair
-- category: seasonal_outlet
-- severity: high
-- window: local_days 56 every 28
-- entity: outlet
-- owner: tim-data
-- summary: Dalam {observed_days} hari, {outlet_name} aktif {active_days} hari dan {active_in_benefit} di antaranya jatuh pada {benefit_days} hari setelah pencairan {bank} (yang hanya mencakup {expected_share} dari seluruh hari); pembeli umum (DEBIT/QRIS): {ordinary_payments} transaksi. E-Warong lain di {regency_name} aktif {peer_active_days} hari dengan {peer_benefit_share} hari aktifnya dalam masa pencairan. {payment_share_pct}% pembayarannya terjadi dalam masa pencairan (e-Warong lain: {peer_payment_share_pct}%). Peluang kebetulan p = {p_value}. Kunjungi untuk memastikan toko benar-benar beroperasi.
-- description: Share of an outlet's active days that fall within 8 days of its bank's credit dates in its regency, tested with a binomial tail against the share of days those windows cover; or, for an outlet that still sells a little on other days, at least 80% of its payments (KKS and ordinary) inside those windows where the peers' median is under 60%, improbable at the peers' share (binomial tail < 1e-6), with fewer ordinary (DEBIT/QRIS) payments outside the windows than days there: a shop with walk-in trade every day is open, however much a credit-day queue adds to its windows. Reads the daily rollups, never raw events. Outlets missing from the registry are not judged (their bank is unknown).
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
           sum(a.ordinary_payments) AS ordinary_payments,
           sum(CASE WHEN b.local_date IS NOT NULL THEN a.kks_payments + a.ordinary_payments ELSE 0 END)
               AS payments_in_benefit,
           sum(CASE WHEN b.local_date IS NULL THEN a.ordinary_payments ELSE 0 END)
               AS ordinary_outside_benefit
    FROM active a
    LEFT JOIN benefit_days b
      ON b.regency_code = a.regency_code AND b.bank = a.bank AND b.local_date = a.local_date
    GROUP BY a.outlet_id, a.regency_code, a.bank
),
scored AS (
    SELECT p.*, c.observed_days, s.benefit_days,
           CAST(s.benefit_days AS DOUBLE) / c.observed_days AS expected_share,
           CAST(p.active_in_benefit AS DOUBLE) / p.active_days AS benefit_share,
           CAST(p.payments_in_benefit AS DOUBLE) / (p.kks_payments + p.ordinary_payments) AS payment_share,
           binomial_sf(p.active_in_benefit, p.active_days,
                       CAST(s.benefit_days AS DOUBLE) / c.observed_days) AS p_value
    FROM per_outlet p
    JOIN coverage c ON c.regency_code = p.regency_code
    JOIN benefit_share s ON s.regency_code = p.regency_code AND s.bank = p.bank
),
peers AS (
    SELECT regency_code,
           median(benefit_share) AS peer_benefit_share,
           median(payment_share) AS peer_payment_share,
           median(active_days) AS peer_active_days
    FROM scored
    GROUP BY regency_code
),
judged AS (
    SELECT s.*, p.peer_benefit_share, p.peer_payment_share, p.peer_active_days,
           -- The payments test: is this share of payments in the windows improbable at
           -- the peers' share? Payments cluster, so it needs a large share as well.
           binomial_sf(s.payments_in_benefit, s.kks_payments + s.ordinary_payments,
                       p.peer_payment_share) AS payments_p_value
    FROM scored s
    JOIN peers p ON p.regency_code = s.regency_code
),
alerted AS (
SELECT j.outlet_id AS entity_id,
       j.regency_code,
       p_score(least(j.p_value, j.payments_p_value)) AS score,
       j.outlet_id,
       coalesce(o.name, j.outlet_id) AS outlet_name,
       o.district_code,
       j.bank,
       j.observed_days,
       j.active_days,
       j.active_in_benefit,
       j.benefit_days,
       round(j.expected_share, 3) AS expected_share,
       round(j.benefit_share, 3) AS benefit_share,
       j.kks_payments,
       j.ordinary_payments,
       j.ordinary_outside_benefit,
       round(100.0 * j.payment_share, 1) AS payment_share_pct,
       round(100.0 * j.peer_payment_share, 1) AS peer_payment_share_pct,
       round(j.peer_benefit_share, 3) AS peer_benefit_share,
       CAST(j.peer_active_days AS BIGINT) AS peer_active_days,
       j.p_value,
       j.payments_p_value,
       1e-6 AS p_threshold,
       0.8 AS min_payment_share
FROM judged j
LEFT JOIN outlets o ON o.outlet_id = j.outlet_id
WHERE j.active_days >= 5 AND j.peer_benefit_share < 0.6
  AND (j.p_value < 1e-6
       OR (j.payment_share >= 0.8 AND j.peer_payment_share < 0.6 AND j.payments_p_value < 1e-6
           -- A shop with walk-in customers every day is open, however busy credit day
           -- (a queue) makes it: fewer than one a day outside the windows.
           AND j.ordinary_outside_benefit < j.observed_days - j.benefit_days))
),
peer_daily AS (
    -- What a typical e-Warong of the regency sells on each day: the day's payments over
    -- the regency's outlets that were active at all in the window.
    SELECT a.regency_code, a.local_date,
           CAST(sum(a.kks_payments + a.ordinary_payments) AS DOUBLE) / max(n.outlets) AS peer_payments
    FROM active a
    JOIN (SELECT regency_code, count(DISTINCT outlet_id) AS outlets FROM active GROUP BY regency_code) n
      ON n.regency_code = a.regency_code
    GROUP BY a.regency_code, a.local_date
),
series AS (
    -- The chart a Tikor member sees: day by day over the observed days, the outlet's
    -- payments, a typical peer's, and whether the day lies in a disbursement window.
    SELECT a.outlet_id,
           min(ob.local_date) AS first_day,
           array_agg(coalesce(d.kks_payments + d.ordinary_payments, 0) ORDER BY ob.local_date) AS daily_payments,
           array_agg(round(coalesce(p.peer_payments, 0.0), 2) ORDER BY ob.local_date) AS peer_daily_payments,
           array_agg(CASE WHEN b.local_date IS NULL THEN 0 ELSE 1 END ORDER BY ob.local_date) AS benefit_window
    FROM alerted a
    JOIN observed ob ON ob.regency_code = a.regency_code
    LEFT JOIN outlet_daily d ON d.outlet_id = a.outlet_id AND d.local_date = ob.local_date
    LEFT JOIN peer_daily p ON p.regency_code = a.regency_code AND p.local_date = ob.local_date
    LEFT JOIN benefit_days b
      ON b.regency_code = a.regency_code AND b.bank = a.bank AND b.local_date = ob.local_date
    GROUP BY a.outlet_id
)
SELECT a.*, s.first_day, s.daily_payments, s.peer_daily_payments, s.benefit_window
FROM alerted a
JOIN series s ON s.outlet_id = a.outlet_id
