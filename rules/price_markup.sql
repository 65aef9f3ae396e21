-- id: price_markup
-- title: Harga {commodity} di {outlet_name} jauh di atas e-Warong sekitarnya
-- category: price_markup
-- severity: medium
-- window: local_day
-- entity: outlet
-- cooldown: 7d
-- owner: tim-data
-- summary: {outlet_name} menjual {commodity} kepada KPM seharga Rp {outlet_price}/{unit} (median {outlet_sales} transaksi), {price_ratio} kali median {peer_area} Rp {peer_median}/{unit} dari {peer_outlets} e-Warong; skor robust z = {robust_z} (batas {z_threshold}). Komoditas lain di outlet ini berharga wajar ({weighed_commodities} komoditas dibandingkan). Verifikasi harga di lokasi dan bandingkan dengan HET.
-- description: One commodity's median unit price at an outlet against its peers' median that day (view commodity_prices: the outlet's kecamatan where 3 or more of its outlets sold the commodity, the regency otherwise; peer_scope and peer_area say which): robust z >= 3.5 and at least 20% above the median, on at least 5 sales, with at least 3 peer outlets. An outlet in line with a dear kecamatan is not marked up; the kecamatan itself is reported by area_price_level. The outlet's other weighed commodities must be mostly at their peers' level (view weighed_goods: at most half elevated, and at most half 10% or more above): when most are raised together it is a rigged scale, reported by short_quantity instead.
WITH kecamatan_prices AS (
    -- Every peer's price of the commodity rides along, for the chart of the outlet
    -- against its peers' spread. Ordered, so that a replay and a run write the same alert.
    SELECT regency_code, district_code, commodity, unit,
           array_agg(CAST(round(outlet_price) AS BIGINT) ORDER BY outlet_price, outlet_id) AS prices
    FROM commodity_prices
    GROUP BY regency_code, district_code, commodity, unit
),
regency_prices AS (
    SELECT regency_code, commodity, unit,
           array_agg(CAST(round(outlet_price) AS BIGINT) ORDER BY outlet_price, outlet_id) AS prices
    FROM commodity_prices
    GROUP BY regency_code, commodity, unit
),
worst AS (
    SELECT c.*, w.weighed_commodities, w.elevated_commodities, w.raised_commodities,
           row_number() OVER (PARTITION BY c.outlet_id ORDER BY c.robust_z DESC, c.commodity) AS rn
    FROM commodity_prices c
    JOIN weighed_goods w ON w.outlet_id = c.outlet_id
    WHERE c.outlet_sales >= 5 AND c.peer_outlets >= 3
      AND c.robust_z >= 3.5 AND c.price_ratio >= 1.2 AND NOT c.in_line_with_kecamatan
      AND w.weighed_commodities >= 2 AND 2 * w.elevated_commodities <= w.weighed_commodities
      AND 2 * w.raised_commodities <= w.weighed_commodities
)
SELECT w.outlet_id AS entity_id,
       w.regency_code,
       round(w.robust_z, 2) AS score,
       w.outlet_id,
       coalesce(o.name, w.outlet_id) AS outlet_name,
       w.district_code,
       w.commodity,
       w.unit,
       CAST(round(w.outlet_price) AS BIGINT) AS outlet_price,
       w.outlet_sales,
       w.peer_scope,
       CASE WHEN w.peer_scope = 'kecamatan' THEN 'kecamatan ini' ELSE 'kabupaten/kota ini' END AS peer_area,
       CAST(round(w.peer_median) AS BIGINT) AS peer_median,
       round(w.peer_mad, 1) AS peer_mad,
       w.peer_outlets,
       CAST(round(w.regency_median) AS BIGINT) AS regency_median,
       round(w.price_ratio, 2) AS price_ratio,
       round(w.robust_z, 2) AS robust_z,
       w.weighed_commodities,
       w.elevated_commodities,
       w.raised_commodities,
       3.5 AS z_threshold,
       1.2 AS ratio_threshold,
       CASE WHEN w.peer_scope = 'kecamatan' THEN k.prices ELSE r.prices END AS peer_prices
FROM worst w
JOIN kecamatan_prices k ON k.regency_code = w.regency_code AND k.district_code = w.district_code
                       AND k.commodity = w.commodity AND k.unit = w.unit
JOIN regency_prices r ON r.regency_code = w.regency_code AND r.commodity = w.commodity AND r.unit = w.unit
LEFT JOIN outlets o ON o.outlet_id = w.outlet_id
WHERE w.rn = 1
