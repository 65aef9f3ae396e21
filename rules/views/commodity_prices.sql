-- view: commodity_prices
-- description: Per outlet, commodity and unit: the outlet's median unit price on KKS sales against its peers: the median of their outlets' median prices and the median absolute deviation of those (MAD, floored at 1% of the median so identical prices do not divide by zero), as a robust z-score and a ratio. Peers are counted by outlet, not by sale, so a busy outlet cannot set its own baseline. The peers are the outlet's kecamatan where at least 3 of its outlets sold the commodity that day (food costs more in the interior for every outlet there), and the whole regency otherwise; peer_scope says which ('kecamatan' or 'kabupaten'). in_line_with_kecamatan is true when the outlet's price is within 5% of its kecamatan's: the median of at least 2 of its outlets selling the commodity (itself included), or, only where it was the kecamatan's one seller of it, the regency's median times the kecamatan's general level that day (kecamatan_level: the median price against the regency over at least 3 of its outlets and all they sold). Such an outlet follows its area, whatever the regency's prices, and the rules do not call it elevated. A robust z of 3.5 is the usual outlier cut-off (Iglewicz and Hoaglin): one odd sale cannot reach it, a price 20% above peers whose prices vary by 2-3% does.
WITH sales AS (
    SELECT i.outlet_id, i.regency_code, coalesce(o.district_code, '') AS district_code,
           i.commodity, i.unit, CAST(i.unit_price AS DOUBLE) AS unit_price
    FROM kks_sale_items i
    LEFT JOIN outlets o ON o.outlet_id = i.outlet_id
),
outlet AS (
    SELECT outlet_id, regency_code, district_code, commodity, unit,
           median(unit_price) AS outlet_price,
           count(*) AS outlet_sales
    FROM sales
    GROUP BY outlet_id, regency_code, district_code, commodity, unit
),
regency AS (
    SELECT regency_code, commodity, unit,
           median(outlet_price) AS regency_median,
           count(*) AS regency_outlets
    FROM outlet
    GROUP BY regency_code, commodity, unit
),
regency_spread AS (
    SELECT o.regency_code, o.commodity, o.unit,
           median(abs(o.outlet_price - r.regency_median)) AS regency_mad
    FROM outlet o
    JOIN regency r ON r.regency_code = o.regency_code AND r.commodity = o.commodity AND r.unit = o.unit
    GROUP BY o.regency_code, o.commodity, o.unit
),
kecamatan AS (
    SELECT regency_code, district_code, commodity, unit,
           median(outlet_price) AS kecamatan_median,
           count(*) AS kecamatan_outlets
    FROM outlet
    GROUP BY regency_code, district_code, commodity, unit
),
kecamatan_spread AS (
    SELECT o.regency_code, o.district_code, o.commodity, o.unit,
           median(abs(o.outlet_price - k.kecamatan_median)) AS kecamatan_mad
    FROM outlet o
    JOIN kecamatan k ON k.regency_code = o.regency_code AND k.district_code = o.district_code
                    AND k.commodity = o.commodity AND k.unit = o.unit
    GROUP BY o.regency_code, o.district_code, o.commodity, o.unit
),
kecamatan_level AS (
    -- How dear the kecamatan is on the whole that day: the median, over its outlets and
    -- everything they sold, of the price against the regency's median. It stands in for a
    -- commodity too few of the kecamatan's outlets sold to have a median of its own.
    SELECT o.regency_code, o.district_code,
           median(o.outlet_price / r.regency_median) AS kecamatan_level,
           count(DISTINCT o.outlet_id) AS level_outlets
    FROM outlet o
    JOIN regency r ON r.regency_code = o.regency_code AND r.commodity = o.commodity AND r.unit = o.unit
    GROUP BY o.regency_code, o.district_code
),
peers AS (
    SELECT k.regency_code, k.district_code, k.commodity, k.unit,
           k.kecamatan_outlets >= 3 AND k.district_code <> '' AS by_kecamatan,
           k.kecamatan_median, k.kecamatan_outlets, ks.kecamatan_mad,
           r.regency_median, r.regency_outlets, rs.regency_mad
    FROM kecamatan k
    JOIN kecamatan_spread ks ON ks.regency_code = k.regency_code AND ks.district_code = k.district_code
                            AND ks.commodity = k.commodity AND ks.unit = k.unit
    JOIN regency r ON r.regency_code = k.regency_code AND r.commodity = k.commodity AND r.unit = k.unit
    JOIN regency_spread rs ON rs.regency_code = k.regency_code AND rs.commodity = k.commodity AND rs.unit = k.unit
),
judged AS (
    SELECT o.*,
           CASE WHEN p.by_kecamatan THEN 'kecamatan' ELSE 'kabupaten' END AS peer_scope,
           CASE WHEN p.by_kecamatan THEN p.kecamatan_median ELSE p.regency_median END AS peer_median,
           CASE WHEN p.by_kecamatan THEN p.kecamatan_mad ELSE p.regency_mad END AS peer_mad,
           CASE WHEN p.by_kecamatan THEN p.kecamatan_outlets ELSE p.regency_outlets END AS peer_outlets,
           p.kecamatan_median, p.kecamatan_outlets, p.regency_median, p.regency_outlets,
           l.kecamatan_level, l.level_outlets
    FROM outlet o
    JOIN peers p ON p.regency_code = o.regency_code AND p.district_code = o.district_code
                AND p.commodity = o.commodity AND p.unit = o.unit
    JOIN kecamatan_level l ON l.regency_code = o.regency_code AND l.district_code = o.district_code
)
SELECT outlet_id, regency_code, district_code, commodity, unit, outlet_price, outlet_sales,
       peer_scope, peer_median, peer_mad, peer_outlets,
       kecamatan_median, kecamatan_outlets, regency_median, regency_outlets,
       robust_z(outlet_price, peer_median, greatest(peer_mad, 0.01 * peer_median)) AS robust_z,
       outlet_price / peer_median AS price_ratio,
       district_code <> '' AND (
           (kecamatan_outlets >= 2 AND outlet_price < 1.05 * kecamatan_median)
           OR (kecamatan_outlets < 2 AND level_outlets >= 3
               AND outlet_price < 1.05 * kecamatan_level * regency_median)
       ) AS in_line_with_kecamatan,
       round(kecamatan_level, 3) AS kecamatan_level
FROM judged
