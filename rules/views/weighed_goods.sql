-- view: weighed_goods
-- description: Per outlet, how many commodities sold by the kilogram could be compared with its peers (view commodity_prices: its kecamatan or its regency; at least 5 sales there and 3 peer outlets selling it) and how many of those are elevated: priced at robust z >= 3.5 and not in line with the outlet's kecamatan (raised_commodities: at least 10% above the peers, whatever the z). One elevated commodity among normal ones is a price markup; most of them elevated by a similar ratio is a rigged scale (short quantity).
SELECT outlet_id,
       count(*) AS weighed_commodities,
       sum(CASE WHEN robust_z >= 3.5 AND NOT in_line_with_kecamatan THEN 1 ELSE 0 END) AS elevated_commodities,
       sum(CASE WHEN price_ratio >= 1.1 AND NOT in_line_with_kecamatan THEN 1 ELSE 0 END) AS raised_commodities,
       median(CASE WHEN robust_z >= 3.5 AND NOT in_line_with_kecamatan THEN price_ratio END) AS elevated_ratio
FROM commodity_prices
WHERE unit = 'kg' AND outlet_sales >= 5 AND peer_outlets >= 3
GROUP BY outlet_id
