-- id: paperwork_mismatch
-- title: Struk KKS di {outlet_name} tidak sesuai ketentuan
-- category: paperwork_mismatch
-- severity: medium
-- window: local_day
-- entity: outlet
-- cooldown: 7d
-- owner: tim-data
-- summary: Dari {purchases} transaksi KKS di {outlet_name} hari ini, {irregular} bermasalah: {mismatched} jumlah tagihan tidak sama dengan jumlah barang x harga (selisih total Rp {overcharged}) dan {ineligible} memuat barang yang tidak boleh dibeli dengan bantuan ({ineligible_goods}). Di e-Warong lain {regency_name}: {district_rate_pct}% transaksi bermasalah; peluang kebetulan p = {p_value}. Periksa struk dan stok barang.
-- description: Share of an outlet's KKS purchases whose amount differs from the sum of items x unit prices by more than Rp 100 and 0.5%, or that list a good outside the program's food list (cooking oil, instant noodles, cigarettes, shampoo ... anything not rice, corn, sago, eggs, meat, fish, tofu, tempeh, beans, vegetables or fruit). Tested with a binomial tail against the rate of the regency's other outlets that day (floored at 1 in 1,000 receipts); fires at p < 1e-6 with at least 2 irregular receipts.
WITH eligible AS (
    SELECT column1 AS commodity
    FROM (VALUES ('BERAS'), ('JAGUNG'), ('SAGU'), ('TELUR'), ('DAGING_AYAM'), ('DAGING_SAPI'),
                 ('IKAN'), ('TAHU'), ('TEMPE'), ('KACANG_HIJAU'), ('KACANG_TANAH'),
                 ('KACANG_MERAH'), ('SAYUR'), ('BUAH'))
),
ineligible_lines AS (
    SELECT i.bank, i.txn_id, i.commodity
    FROM kks_sale_items i
    LEFT JOIN eligible e ON e.commodity = i.commodity
    WHERE e.commodity IS NULL
),
ineligible_txns AS (
    SELECT bank, txn_id FROM ineligible_lines GROUP BY bank, txn_id
),
receipts AS (
    SELECT p.outlet_id, p.regency_code,
           CASE WHEN p.items_total IS NULL
                  OR abs(p.amount - p.items_total) > greatest(100, 0.005 * p.amount)
                THEN 1 ELSE 0 END AS mismatched,
           CASE WHEN x.txn_id IS NOT NULL THEN 1 ELSE 0 END AS ineligible,
           CASE WHEN p.items_total IS NOT NULL AND p.amount > p.items_total
                THEN p.amount - p.items_total ELSE 0 END AS overcharge
    FROM kks_purchases p
    LEFT JOIN ineligible_txns x ON x.bank = p.bank AND x.txn_id = p.txn_id
),
per_outlet AS (
    SELECT outlet_id, regency_code,
           count(*) AS purchases,
           sum(mismatched) AS mismatched,
           sum(ineligible) AS ineligible,
           sum(CASE WHEN mismatched + ineligible > 0 THEN 1 ELSE 0 END) AS irregular,
           sum(CASE WHEN mismatched = 1 THEN overcharge ELSE 0 END) AS overcharged
    FROM receipts
    GROUP BY outlet_id, regency_code
),
district AS (
    SELECT regency_code, sum(purchases) AS purchases, sum(irregular) AS irregular
    FROM per_outlet
    GROUP BY regency_code
),
goods AS (
    SELECT i.outlet_id, string_agg(DISTINCT i.commodity, ', ') AS ineligible_goods
    FROM ineligible_lines l
    JOIN kks_sale_items i ON i.bank = l.bank AND i.txn_id = l.txn_id AND i.commodity = l.commodity
    GROUP BY i.outlet_id
),
rated AS (
    SELECT p.*,
           greatest(others_rate(d.irregular, p.irregular, d.purchases, p.purchases), 0.001)
               AS district_rate
    FROM per_outlet p
    JOIN district d ON d.regency_code = p.regency_code
),
scored AS (
    SELECT r.*, binomial_sf(r.irregular, r.purchases, r.district_rate) AS p_value
    FROM rated r
)
SELECT s.outlet_id AS entity_id,
       s.regency_code,
       p_score(s.p_value) AS score,
       s.outlet_id,
       coalesce(o.name, s.outlet_id) AS outlet_name,
       o.district_code,
       s.purchases,
       s.irregular,
       s.mismatched,
       s.ineligible,
       s.overcharged,
       coalesce(g.ineligible_goods, '-') AS ineligible_goods,
       round(100.0 * s.district_rate, 2) AS district_rate_pct,
       s.p_value,
       1e-6 AS p_threshold
FROM scored s
LEFT JOIN goods g ON g.outlet_id = s.outlet_id
LEFT JOIN outlets o ON o.outlet_id = s.outlet_id
WHERE s.irregular >= 2 AND s.p_value < 1e-6
