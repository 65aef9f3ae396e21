-- id: supplier_dependent
-- title: {ring_size} e-Warong bergantung pada satu pemasok di {regency_name}
-- category: supplier_dependent
-- severity: high
-- window: local_days 28 every 28
-- entity: ring
-- owner: tim-data
-- summary: Dalam {observed_days} hari, {ring_size} e-Warong ({outlet_names}) menjual paket yang hampir selalu sama kepada KPM ({basket_share_pct}% transaksi KKS berisi paket identik; e-Warong lain di {regency_name}: {peer_basket_share_pct}%) dan menyetor {money_share_pct}% uang penjualan KKS ke rekening yang sama ({counterparty_id}), sebesar Rp {money_to_counterparty}. Paket yang sama di {distinct_baskets} variasi di seluruh jaringan. Periksa apakah e-Warong benar-benar berdagang atau hanya perantara pemasok.
-- description: Reads the daily rollups of 28 days. An outlet is supplier-dependent when the share of its KKS purchases buying its most common basket is at robust z >= 3.5 against the regency's outlets and above 50% (at least 20 purchases, at least 14 days observed, so the first and last windows of a history are not judged on a few days), and the counterparty receiving most of its outgoing money got at least half of its KKS takings. Outlets sharing that counterparty are reported together as one ring, named by the counterparty; a ring of one outlet is still reported.
WITH takings AS (
    SELECT outlet_id, regency_code,
           sum(kks_payments) AS kks_payments,
           sum(kks_amount) AS kks_amount,
           count(DISTINCT local_date) AS observed_days
    FROM outlet_daily
    GROUP BY outlet_id, regency_code
),
baskets AS (
    SELECT outlet_id, basket, sum(purchases) AS purchases
    FROM outlet_bundle_daily
    GROUP BY outlet_id, basket
),
ranked_baskets AS (
    SELECT outlet_id, basket, purchases,
           sum(purchases) OVER (PARTITION BY outlet_id) AS all_purchases,
           row_number() OVER (PARTITION BY outlet_id ORDER BY purchases DESC, basket) AS rn
    FROM baskets
),
basket_share AS (
    SELECT r.outlet_id, t.regency_code, r.basket AS top_basket, r.all_purchases,
           CAST(r.purchases AS DOUBLE) / r.all_purchases AS top_share
    FROM ranked_baskets r
    JOIN takings t ON t.outlet_id = r.outlet_id
    WHERE r.rn = 1 AND r.all_purchases >= 20
),
peer_center AS (
    SELECT regency_code, median(top_share) AS peer_share
    FROM basket_share
    GROUP BY regency_code
),
peer_spread AS (
    SELECT b.regency_code, c.peer_share, median(abs(b.top_share - c.peer_share)) AS peer_mad
    FROM basket_share b
    JOIN peer_center c ON c.regency_code = b.regency_code
    GROUP BY b.regency_code, c.peer_share
),
flows AS (
    SELECT outlet_id, counterparty_id, sum(amount) AS amount
    FROM outlet_transfer_daily
    GROUP BY outlet_id, counterparty_id
),
top_flow AS (
    SELECT outlet_id, counterparty_id, amount,
           row_number() OVER (PARTITION BY outlet_id ORDER BY amount DESC, counterparty_id) AS rn
    FROM flows
),
members AS (
    SELECT b.outlet_id, b.regency_code, b.top_basket, b.top_share, b.all_purchases,
           p.peer_share,
           robust_z(b.top_share, p.peer_share, greatest(p.peer_mad, 0.01)) AS basket_z,
           f.counterparty_id, f.amount AS money_to_counterparty,
           CAST(f.amount AS DOUBLE) / t.kks_amount AS money_share,
           t.kks_amount, t.observed_days
    FROM basket_share b
    JOIN peer_spread p ON p.regency_code = b.regency_code
    JOIN takings t ON t.outlet_id = b.outlet_id
    JOIN top_flow f ON f.outlet_id = b.outlet_id AND f.rn = 1
    WHERE t.kks_amount > 0
),
flagged AS (
    SELECT * FROM members
    WHERE basket_z >= 3.5 AND top_share > 0.5 AND money_share >= 0.5 AND observed_days >= 14
)
SELECT f.counterparty_id AS entity_id,
       min(f.regency_code) AS regency_code,
       round(min(f.basket_z), 2) AS score,
       f.counterparty_id,
       count(*) AS ring_size,
       string_agg(coalesce(o.name, f.outlet_id), ', ' ORDER BY f.outlet_id) AS outlet_names,
       array_agg(f.outlet_id ORDER BY f.outlet_id) AS outlets,
       max(f.observed_days) AS observed_days,
       round(100.0 * sum(f.top_share * f.all_purchases) / sum(f.all_purchases), 1) AS basket_share_pct,
       round(100.0 * max(f.peer_share), 1) AS peer_basket_share_pct,
       round(100.0 * sum(f.money_to_counterparty) / sum(f.kks_amount), 1) AS money_share_pct,
       sum(f.money_to_counterparty) AS money_to_counterparty,
       count(DISTINCT f.top_basket) AS distinct_baskets,
       round(min(f.basket_z), 2) AS min_basket_z,
       3.5 AS z_threshold,
       0.5 AS money_share_threshold
FROM flagged f
LEFT JOIN outlets o ON o.outlet_id = f.outlet_id
GROUP BY f.counterparty_id
