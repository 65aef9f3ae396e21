-- id: price_markup
-- title: Harga {commodity} di {outlet_name} jauh di atas median kabupaten/kota
-- category: price_markup
-- severity: medium
-- window: local_day
-- entity: outlet
-- cooldown: 7d
-- owner: tim-data
-- summary: {outlet_name} menjual {commodity} kepada KPM seharga Rp {outlet_price}/{unit} (median {outlet_sales} transaksi), {price_ratio} kali median {regency_name} Rp {district_median}/{unit} dari {district_outlets} e-Warong; skor robust z = {robust_z} (batas {z_threshold}). Komoditas lain di outlet ini berharga wajar ({weighed_commodities} komoditas dibandingkan). Verifikasi harga di lokasi dan bandingkan dengan HET.
-- description: One commodity's median unit price at an outlet against the regency's median that day (view commodity_prices): robust z >= 3.5 and at least 20% above the median, on at least 5 sales, with at least 3 outlets in the regency. The outlet's other weighed commodities must be mostly at the regency's level (view weighed_goods): when most are elevated together it is a rigged scale, reported by short_quantity instead.
WITH priced AS (
    -- Every outlet's price of the commodity in the regency rides along, for the chart of
    -- the outlet against the district's spread (one pass over the view, not two).
    SELECT c.*,
           -- Ordered, so that a replay and a run write the same alert.
           array_agg(CAST(round(c.outlet_price) AS BIGINT))
               OVER (PARTITION BY c.regency_code, c.commodity, c.unit
                     ORDER BY c.outlet_price, c.outlet_id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS district_prices
    FROM commodity_prices c
),
worst AS (
    SELECT c.*, w.weighed_commodities, w.elevated_commodities,
           row_number() OVER (PARTITION BY c.outlet_id ORDER BY c.robust_z DESC, c.commodity) AS rn
    FROM priced c
    JOIN weighed_goods w ON w.outlet_id = c.outlet_id
    WHERE c.outlet_sales >= 5 AND c.district_outlets >= 3
      AND c.robust_z >= 3.5 AND c.price_ratio >= 1.2
      AND w.weighed_commodities >= 2 AND 2 * w.elevated_commodities <= w.weighed_commodities
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
       w.weighed_commodities,
       w.elevated_commodities,
       3.5 AS z_threshold,
       1.2 AS ratio_threshold,
       w.district_prices
FROM worst w
LEFT JOIN outlets o ON o.outlet_id = w.outlet_id
WHERE w.rn = 1
