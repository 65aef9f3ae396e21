-- view: commodity_prices
-- description: Per outlet, commodity and unit: the outlet's median unit price on KKS sales against its regency's median and median absolute deviation (MAD, floored at 1% of the median so identical prices do not divide by zero), as a robust z-score and a ratio. A robust z of 3.5 is the usual outlier cut-off (Iglewicz and Hoaglin): one odd sale cannot reach it, a price 20% above peers whose prices vary by 2-3% does.
WITH sales AS (
    SELECT outlet_id, regency_code, commodity, unit, CAST(unit_price AS DOUBLE) AS unit_price
    FROM kks_sale_items
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
)
SELECT o.outlet_id, o.regency_code, o.commodity, o.unit, o.outlet_price, o.outlet_sales,
       d.district_median, d.district_outlets, v.district_mad,
       robust_z(o.outlet_price, d.district_median,
                greatest(v.district_mad, 0.01 * d.district_median)) AS robust_z,
       o.outlet_price / d.district_median AS price_ratio
FROM outlet o
JOIN district d ON d.regency_code = o.regency_code AND d.commodity = o.commodity AND d.unit = o.unit
JOIN spread v ON v.regency_code = o.regency_code AND v.commodity = o.commodity AND v.unit = o.unit
