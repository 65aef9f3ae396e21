-- id: kpm_over_norm
-- title: {outlet_name} melayani {cards_served} KPM, di atas batas {norm} KPM per e-Warong
-- category: kpm_over_norm
-- severity: medium
-- window: local_days 100 every 7
-- entity: outlet
-- cooldown: 28d
-- owner: tim-data
-- summary: {outlet_name} melayani {cards_served} kartu KKS berbeda antara {first_day} dan {last_day} (terdaftar {kpm_assigned} KPM), di atas batas {norm} KPM per e-Warong ({norm_source}). e-Warong yang melayani terlalu banyak KPM rawan antrean panjang, stok kurang dan pelayanan asal-asalan. Bahas pemerataan KPM ke e-Warong lain bersama bank penyalur.
-- description: Distinct KKS cards whose main outlet of a day (card_daily) was this outlet over the window, above the program's norm of KPM per e-Warong, read from the reference table program_norms (name kpm_per_outlet_max; edit rules/tables/program_norms.csv to change it). kpm_assigned is the registry's figure beside it.
WITH served AS (
    SELECT outlet_id, regency_code,
           count(DISTINCT card_id) AS cards_served,
           min(local_date) AS first_day,
           max(local_date) AS last_day
    FROM card_daily
    WHERE outlet_id IS NOT NULL AND purchases > 0
    GROUP BY outlet_id, regency_code
),
norm AS (
    SELECT CAST(value AS BIGINT) AS norm, source AS norm_source
    FROM program_norms
    WHERE name = 'kpm_per_outlet_max'
)
SELECT s.outlet_id AS entity_id,
       s.regency_code,
       CAST(s.cards_served AS DOUBLE) / n.norm AS score,
       s.outlet_id,
       coalesce(o.name, s.outlet_id) AS outlet_name,
       o.district_code,
       s.cards_served,
       o.kpm_assigned,
       n.norm,
       n.norm_source,
       CAST(s.first_day AS VARCHAR) AS first_day,
       CAST(s.last_day AS VARCHAR) AS last_day
FROM served s
CROSS JOIN norm n
LEFT JOIN outlets o ON o.outlet_id = s.outlet_id
WHERE s.cards_served > n.norm
