-- id: price_markup
-- title: Harga {commodity} di {outlet_name} jauh di atas median kabupaten/kota
-- category: price_markup
-- severity: medium
-- window: local_day
-- entity: outlet
-- owner: tim-data
-- summary: {outlet_name} menjual {commodity} kepada KPM seharga Rp {outlet_price}/{unit} (median {outlet_sales} transaksi), {price_ratio} kali median {regency_name} Rp {district_median}/{unit} dari {district_outlets} e-Warong; skor robust z = {robust_z}. Verifikasi harga di lokasi dan bandingkan dengan HET.
-- description: Median unit price per commodity at an outlet against the regency's median that day, scored with the median absolute deviation (robust z). Needs at least 5 sales at the outlet and 3 outlets in the regency; a MAD below 1% of the median is floored there so identical prices do not divide by zero. Reversed purchases are left out.
WITH reversed AS (
    SELECT DISTINCT bank, reverses_txn_id AS txn_id
    FROM transactions
    WHERE type = 'reversal' AND reverses_txn_id IS NOT NULL
),
sales AS (
    SELECT i.outlet_id, i.regency_code, i.commodity, i.unit, CAST(i.unit_price AS DOUBLE) AS unit_price
    FROM transaction_items i
    LEFT JOIN reversed r ON r.bank = i.bank AND r.txn_id = i.txn_id
    WHERE i.payment = 'KKS' AND r.txn_id IS NULL
),
district AS (
    SELECT regency_code, commodity, unit,
           median(unit_price) AS district_median,
           count(DISTINCT outlet_id) AS district_outlets
    FROM sales
    GROUP BY regency_code, commodity, unit
),
spread AS (
    SELECT s.regency_code, s.commodity, s.unit,
           median(abs(s.unit_price - d.district_median)) AS district_mad
    FROM sales s
    JOIN district d ON d.regency_code = s.regency_code AND d.commodity = s.commodity AND d.unit = s.unit
    GROUP BY s.regency_code, s.commodity, s.unit
),
outlet AS (
    SELECT outlet_id, regency_code, commodity, unit,
           median(unit_price) AS outlet_price,
           count(*) AS outlet_sales
    FROM sales
    GROUP BY outlet_id, regency_code, commodity, unit
),
scored AS (
    SELECT o.*, d.district_median, d.district_outlets, v.district_mad,
           robust_z(o.outlet_price, d.district_median,
                    greatest(v.district_mad, 0.01 * d.district_median)) AS robust_z,
           o.outlet_price / d.district_median AS price_ratio
    FROM outlet o
    JOIN district d ON d.regency_code = o.regency_code AND d.commodity = o.commodity AND d.unit = o.unit
    JOIN spread v ON v.regency_code = o.regency_code AND v.commodity = o.commodity AND v.unit = o.unit
    WHERE o.outlet_sales >= 5 AND d.district_outlets >= 3
),
worst AS (
    SELECT *, row_number() OVER (PARTITION BY outlet_id ORDER BY robust_z DESC, commodity) AS rn
    FROM scored
    WHERE robust_z >= 3.5 AND price_ratio >= 1.2
)
SELECT w.outlet_id AS entity_id,
       w.regency_code,
       round(w.robust_z, 2) AS score,
       w.outlet_id,
       coalesce(o.name, w.outlet_id) AS outlet_name,
       o.district_code,
       w.commodity,
       w.unit,
       CAST(round(w.outlet_price) AS BIGINT) AS outlet_price,
       w.outlet_sales,
       CAST(round(w.district_median) AS BIGINT) AS district_median,
       round(w.district_mad, 1) AS district_mad,
       w.district_outlets,
       round(w.price_ratio, 2) AS price_ratio,
       round(w.robust_z, 2) AS robust_z,
       3.5 AS z_threshold,
       1.2 AS ratio_threshold
FROM worst w
LEFT JOIN outlets o ON o.outlet_id = w.outlet_id
WHERE w.rn = 1
