-- id: short_quantity
-- title: Takaran di {outlet_name} lebih sedikit dari e-Warong lain
-- category: short_quantity
-- severity: high
-- window: local_day
-- entity: outlet
-- cooldown: 7d
-- owner: tim-data
-- summary: Di {outlet_name}, setiap rupiah KPM hanya mendapat {food_per_rupiah_pct}% dari takaran di e-Warong lain di {peer_area}: {elevated_commodities} dari {weighed_commodities} komoditas yang ditimbang lebih mahal per kg dengan rasio serupa ({commodities}). Pola ini menunjukkan timbangan yang dikurangi, bukan kenaikan harga satu barang. Timbang ulang paket di lokasi.
-- description: Food per rupiah below the peers' on most commodities sold by the kilogram at once: at least 2 weighed commodities comparable with the peers (5+ sales at the outlet, 3+ peer outlets) and more than half of them at robust z >= 3.5 against the peers' median price per kg (view weighed_goods; the peers are the outlet's kecamatan where it has 3 or more outlets selling, the regency otherwise, and a commodity priced in line with the outlet's kecamatan is never elevated, so a whole dear kecamatan is not a rigged scale), by a median ratio of at least 1.1 (at least 10% less food per rupiah: a robust z alone would flag a few percent where the regency's prices are tight). A rigged scale shorts every weighed good by the same ratio; a markup raises one. food_per_rupiah_pct is the peers' median price over the outlet's, the median over the elevated commodities.
WITH elevated AS (
    SELECT c.outlet_id, c.regency_code,
           string_agg(c.commodity || ' Rp ' || CAST(CAST(round(c.outlet_price) AS BIGINT) AS VARCHAR)
                      || ' vs Rp ' || CAST(CAST(round(c.peer_median) AS BIGINT) AS VARCHAR), '; '
                      ORDER BY c.commodity) AS commodities,
           min(c.robust_z) AS min_robust_z,
           median(c.robust_z) AS median_robust_z,
           -- Kecamatan when every elevated commodity was judged there.
           min(c.peer_scope) AS peer_scope
    FROM commodity_prices c
    WHERE c.unit = 'kg' AND c.outlet_sales >= 5 AND c.peer_outlets >= 3 AND c.robust_z >= 3.5
      AND NOT c.in_line_with_kecamatan
    GROUP BY c.outlet_id, c.regency_code
)
SELECT e.outlet_id AS entity_id,
       e.regency_code,
       round(e.median_robust_z, 2) AS score,
       e.outlet_id,
       coalesce(o.name, e.outlet_id) AS outlet_name,
       o.district_code,
       e.peer_scope,
       CASE WHEN e.peer_scope = 'kecamatan' THEN 'kecamatan ini' ELSE 'kabupaten/kota ini' END AS peer_area,
       w.weighed_commodities,
       w.elevated_commodities,
       e.commodities,
       round(100.0 / w.elevated_ratio, 0) AS food_per_rupiah_pct,
       round(w.elevated_ratio, 3) AS price_per_kg_ratio,
       round(e.min_robust_z, 2) AS min_robust_z,
       3.5 AS z_threshold,
       1.1 AS ratio_threshold
FROM elevated e
JOIN weighed_goods w ON w.outlet_id = e.outlet_id
LEFT JOIN outlets o ON o.outlet_id = e.outlet_id
WHERE w.weighed_commodities >= 2 AND 2 * w.elevated_commodities > w.weighed_commodities
  AND w.elevated_ratio >= 1.1
