-- view: weighed_goods
-- description: Per outlet, how many commodities sold by the kilogram could be compared with the regency (at least 3 sales there and 3 outlets selling it) and how many of those are priced at robust z >= 3.5. One elevated commodity among normal ones is a price markup; most of them elevated by a similar ratio is a rigged scale (short quantity).
SELECT outlet_id,
       count(*) AS weighed_commodities,
       sum(CASE WHEN robust_z >= 3.5 THEN 1 ELSE 0 END) AS elevated_commodities,
       median(CASE WHEN robust_z >= 3.5 THEN price_ratio END) AS elevated_ratio
FROM commodity_prices
WHERE unit = 'kg' AND outlet_sales >= 3 AND district_outlets >= 3
GROUP BY outlet_id
