-- id: fixed_amount
-- title: KPM di {outlet_name} dibebani nominal yang sama, Rp {fixed_amount}
-- category: fixed_amount
-- severity: medium
-- window: local_day
-- entity: outlet
-- cooldown: 7d
-- owner: tim-data
-- summary: {same_amount_sales} dari {kks_sales} transaksi KKS di {outlet_name} hari itu bernilai tepat Rp {fixed_amount}, sedangkan di e-Warong lain {regency_name} hanya {peer_share_pct}% transaksi bernilai sama. KPM berhak memilih jenis dan jumlah barang sendiri; nominal yang selalu sama menandakan paket yang dipaksakan. Tanyakan kepada KPM apakah mereka bebas memilih barang.
-- description: The same round amount (a multiple of Rp 10,000: the whole benefit, a fixed package) on at least 80% of an outlet's KKS purchases of the day (view kks_purchases), on at least 8 purchases spread over 3 or more hours of the day (cards drained in one burst are card collection, not a package), where at most half of the regency's other outlets' purchases that day (20 or more) come to exactly that amount. People choosing their own food spend varied sums; a KPM spending the whole benefit in one visit is common, so the peers' share says how common.
WITH amounts AS (
    SELECT outlet_id, regency_code, amount, count(*) AS sales,
           count(DISTINCT local_hour) AS hours
    FROM kks_purchases
    GROUP BY outlet_id, regency_code, amount
),
ranked AS (
    SELECT a.*,
           sum(a.sales) OVER (PARTITION BY a.outlet_id) AS kks_sales,
           row_number() OVER (PARTITION BY a.outlet_id ORDER BY a.sales DESC, a.amount DESC) AS rn
    FROM amounts a
),
candidates AS (
    SELECT * FROM ranked
    WHERE rn = 1 AND sales >= 8 AND sales >= 0.8 * kks_sales AND amount % 10000 = 0
      -- Customers served through the day; cards swiped in one burst are card_collection.
      AND hours >= 3
),
regency AS (
    SELECT regency_code, amount, sum(sales) AS same_amount
    FROM amounts
    GROUP BY regency_code, amount
),
regency_total AS (
    SELECT regency_code, sum(sales) AS all_sales
    FROM amounts
    GROUP BY regency_code
),
judged AS (
    SELECT c.outlet_id, c.regency_code, c.amount, c.sales, c.kks_sales,
           r.same_amount - c.sales AS peer_same,
           t.all_sales - c.kks_sales AS peer_sales
    FROM candidates c
    JOIN regency r ON r.regency_code = c.regency_code AND r.amount = c.amount
    JOIN regency_total t ON t.regency_code = c.regency_code
)
SELECT j.outlet_id AS entity_id,
       j.regency_code,
       round(CAST(j.sales AS DOUBLE) / j.kks_sales, 3) AS score,
       j.outlet_id,
       coalesce(o.name, j.outlet_id) AS outlet_name,
       o.district_code,
       j.amount AS fixed_amount,
       j.sales AS same_amount_sales,
       j.kks_sales,
       j.peer_sales,
       CAST(round(100.0 * j.peer_same / j.peer_sales) AS BIGINT) AS peer_share_pct,
       0.8 AS min_share,
       0.5 AS max_peer_share
FROM judged j
LEFT JOIN outlets o ON o.outlet_id = j.outlet_id
WHERE j.peer_sales >= 20 AND 2 * j.peer_same <= j.peer_sales
