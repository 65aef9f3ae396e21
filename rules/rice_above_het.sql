-- id: rice_above_het
-- title: Beras dijual di atas HET di {outlet_name}
-- category: price_above_ceiling
-- severity: medium
-- window: local_day
-- entity: outlet
-- cooldown: 7d
-- owner: tim-data
-- summary: {outlet_name} menjual beras kepada KPM seharga Rp {outlet_price}/kg (median {rice_sales} penjualan hari itu, {sales_above} di atas HET, tertinggi Rp {highest_price}/kg), di atas HET beras premium zona {zone} Rp {ceiling}/kg (berlaku sejak {ceiling_since}). Harga di atas HET beras premium melanggar ketentuan, apa pun mutu berasnya. Periksa harga yang dipajang dan struk KPM, lalu minta e-Warong menurunkan harga.
-- description: KKS sales of rice (view kks_sale_items, commodity BERAS, per kg) above the premium-grade ceiling (HET) of the outlet's zone on the day of the sale, read from the reference tables reference_prices (kind HET, grade premium) and price_zones (the province, the first two digits of the regency code, gives the zone). Premium is the higher ceiling, so a sale above it breaks the rule whatever the rice's grade. At least three quarters of the outlet's rice sales of the day (5 or more) must be above it: the price the outlet asks, not a few receipts rounded up when a KPM spends the last rupiah of the balance. Update rules/tables/reference_prices.csv when a new regulation comes out; it is reloaded with the rules.
WITH rice AS (
    SELECT outlet_id, regency_code, local_date, unit_price
    FROM kks_sale_items
    WHERE commodity = 'BERAS' AND unit = 'kg'
),
ceilings AS (
    SELECT z.province_code, r.zone, r.valid_from, r.valid_to, r.price AS ceiling,
           r.source AS regulation
    FROM reference_prices r
    JOIN price_zones z ON z.zone = r.zone
    WHERE r.commodity = 'BERAS' AND r.grade = 'premium' AND r.kind = 'HET' AND r.unit = 'kg'
),
judged AS (
    SELECT s.outlet_id, s.regency_code, s.unit_price, c.ceiling, c.zone, c.regulation,
           c.valid_from
    FROM rice s
    JOIN ceilings c ON c.province_code = CAST(CAST(s.regency_code AS BIGINT) / 100 AS VARCHAR)
                   AND c.valid_from <= s.local_date
                   AND (c.valid_to IS NULL OR s.local_date <= c.valid_to)
),
per_outlet AS (
    SELECT outlet_id, regency_code,
           max(ceiling) AS ceiling,
           max(zone) AS zone,
           max(regulation) AS regulation,
           max(valid_from) AS ceiling_since,
           count(*) AS rice_sales,
           sum(CASE WHEN unit_price > ceiling THEN 1 ELSE 0 END) AS sales_above,
           max(unit_price) AS highest_price,
           median(unit_price) AS outlet_price
    FROM judged
    GROUP BY outlet_id, regency_code
)
SELECT p.outlet_id AS entity_id,
       p.regency_code,
       round(CAST(p.outlet_price AS DOUBLE) / p.ceiling, 3) AS score,
       p.outlet_id,
       coalesce(o.name, p.outlet_id) AS outlet_name,
       o.district_code,
       'BERAS' AS commodity,
       CAST(round(p.outlet_price) AS BIGINT) AS outlet_price,
       p.highest_price,
       p.ceiling,
       p.zone,
       p.regulation,
       CAST(p.ceiling_since AS VARCHAR) AS ceiling_since,
       p.rice_sales,
       p.sales_above,
       round(CAST(p.outlet_price AS DOUBLE) / p.ceiling, 3) AS price_to_ceiling,
       5 AS min_rice_sales,
       0.75 AS min_share_above
FROM per_outlet p
LEFT JOIN outlets o ON o.outlet_id = p.outlet_id
WHERE p.rice_sales >= 5 AND 4 * p.sales_above >= 3 * p.rice_sales
