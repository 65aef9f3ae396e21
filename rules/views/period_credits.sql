-- view: period_credits
-- description: Every benefit credit in the window's card_daily rollups, one row per card and period, with the day it was credited and the first day after the period it covers (period + months), and the WIB date the window ends on. Period-long rules (non-transacting KPM, realization) start here.
WITH credits AS (
    SELECT card_id, regency_code, bank, period,
           max(months) AS months,
           min(local_date) AS credit_date,
           sum(credited) AS credited,
           CAST(date_part('year', to_date(period || '-01')) AS INT) * 12
               + CAST(date_part('month', to_date(period || '-01')) AS INT) - 1
               + CAST(max(months) AS INT) AS end_month,
           max(CAST(window_end + INTERVAL '7 hours' AS DATE)) AS window_end_date
    FROM card_daily
    WHERE credited > 0 AND period IS NOT NULL
    GROUP BY card_id, regency_code, bank, period
)
SELECT card_id, regency_code, bank, period, months, credit_date, credited,
       make_date(end_month / 12, end_month % 12 + 1, 1) AS period_end,
       window_end_date
FROM credits
