-- id: area_price_level
-- title: Harga pangan se-kecamatan lebih tinggi dari {regency_name}
-- category: area_price_level
-- severity: low
-- window: local_day
-- entity: district
-- cooldown: 28d
-- owner: tim-data
-- summary: {dear_outlets} dari {kecamatan_outlets} e-Warong di kecamatan ini menjual pangan yang ditimbang lebih mahal daripada median {regency_name}, rata-rata {premium_pct}% di atasnya ({commodities}). Ini bukan pelanggaran satu e-Warong: kemungkinan ongkos angkut atau pasokan. Perhatikan harga dan pasokan di kecamatan ini, dan bandingkan dengan HET.
-- description: A whole kecamatan selling dearer than its regency (view commodity_prices): each outlet's level is the median, over the weighed commodities it sold, of its price against the regency's median; at least 3 of the kecamatan's outlets are compared, in a regency with 5 or more outlets selling, at least three quarters of them are 5% or more above the regency, and their median level is 1.05 or more. Every outlet of an interior kecamatan is dearer; one or two odd outlets in an ordinary kecamatan are not a kecamatan. Outlets in line with such a kecamatan are judged against it by price_markup and short_quantity, so the area's prices raise this note rather than accusations (except where too few of its outlets sold that day to give a kecamatan level; see README, Detection quality): information for the monitoring team (transport, supply), not an accusation.
WITH outlet_level AS (
    SELECT outlet_id, regency_code, district_code,
           median(outlet_price / regency_median) AS level
    FROM commodity_prices
    WHERE unit = 'kg' AND district_code <> '' AND regency_outlets >= 5
    GROUP BY outlet_id, regency_code, district_code
),
areas AS (
    SELECT regency_code, district_code,
           count(*) AS kecamatan_outlets,
           sum(CASE WHEN level >= 1.05 THEN 1 ELSE 0 END) AS dear_outlets,
           median(level) AS price_ratio
    FROM outlet_level
    GROUP BY regency_code, district_code
),
examples AS (
    -- The kecamatan's and the regency's medians, commodity by commodity, for the reader.
    SELECT regency_code, district_code,
           string_agg(commodity || ' Rp ' || CAST(CAST(round(kecamatan_median) AS BIGINT) AS VARCHAR)
                      || ' vs Rp ' || CAST(CAST(round(regency_median) AS BIGINT) AS VARCHAR), '; '
                      ORDER BY commodity) AS commodities
    FROM (SELECT DISTINCT regency_code, district_code, commodity, kecamatan_median, regency_median
          FROM commodity_prices
          WHERE unit = 'kg' AND district_code <> '') k
    GROUP BY regency_code, district_code
)
SELECT a.district_code AS entity_id,
       a.regency_code,
       round(a.price_ratio, 3) AS score,
       a.district_code,
       a.kecamatan_outlets,
       a.dear_outlets,
       round(a.price_ratio, 3) AS price_ratio,
       CAST(round(100.0 * (a.price_ratio - 1.0)) AS BIGINT) AS premium_pct,
       e.commodities,
       1.05 AS ratio_threshold
FROM areas a
JOIN examples e ON e.regency_code = a.regency_code AND e.district_code = a.district_code
WHERE a.kecamatan_outlets >= 3 AND 4 * a.dear_outlets >= 3 * a.kecamatan_outlets
  AND a.price_ratio >= 1.05
