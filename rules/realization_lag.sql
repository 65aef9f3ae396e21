-- id: realization_lag
-- title: Realisasi bantuan di {regency_name} tertinggal dari daerah lain
-- category: realization_lag
-- severity: high
-- window: local_days 100 every 7
-- entity: regency
-- owner: tim-data
-- summary: {days_after_credit} hari setelah pencairan periode {period} (menjelang akhir periode), baru {realized} dari {credited} KPM di {regency_name} ({realization_pct}%) yang membelanjakan bantuannya, sedangkan median {peer_regencies} kabupaten/kota lain di provinsi yang sama pada titik yang sama adalah {peer_realization_pct}%. Peluang kebetulan p = {p_value}. Periksa penyaluran kartu KKS, stok e-Warong dan akses KPM ke e-Warong.
-- description: Realization is the share of credited KPM who have spent anything. A district is judged once per period, in the week when three quarters of the time from its last credit to the end of the period have passed (late in the period, when ordinary districts have about nine in ten KPM spending): its share of credited KPM who spent within that many days of their credit, against the median of the other regencies' shares in its province over the same number of days after their own latest credit (or until that period's end, if shorter). Lower tail of a binomial at the peers' rate; fires at p < 1e-6 when the district is at least 10 points behind, with at least 2 peers.
WITH credits AS (
    SELECT card_id, regency_code, period, credit_date,
           CAST(credit_date AS INT) AS credit_day,
           CAST(period_end AS INT) AS end_of_period,
           CAST(window_end_date AS INT) AS end_day
    FROM period_credits
),
marks AS (
    SELECT regency_code, period,
           max(credit_day) AS last_credit,
           max(credit_day)
             + CAST(floor(0.75 * (max(end_of_period) - max(credit_day))) AS INT) AS mark_day,
           max(end_day) AS end_day
    FROM credits
    GROUP BY regency_code, period
),
judged AS (
    SELECT regency_code, period, mark_day - last_credit AS elapsed
    FROM marks
    WHERE mark_day > end_day - 7 AND mark_day <= end_day
),
-- Who is compared over which credits: the judged district's own, and each other
-- regency's latest period whose credit is at least `elapsed` days old.
compared AS (
    SELECT j.regency_code AS judged, j.period AS judged_period, j.elapsed,
           j.regency_code, j.period
    FROM judged j
    UNION ALL
    SELECT judged, judged_period, elapsed, regency_code, period
    FROM (
        SELECT j.regency_code AS judged, j.period AS judged_period, j.elapsed,
               m.regency_code, m.period,
               row_number() OVER (PARTITION BY j.regency_code, j.period, m.regency_code
                                  ORDER BY m.last_credit DESC) AS rn
        FROM judged j
        JOIN marks m ON m.regency_code <> j.regency_code
         -- Peers from the same province: an engine holds whole provinces (README, Guarantees).
         AND CAST(m.regency_code AS INT) / 100 = CAST(j.regency_code AS INT) / 100
         AND m.last_credit + j.elapsed <= m.end_day
    ) latest
    WHERE rn = 1
),
figures AS (
    SELECT q.judged, q.judged_period, q.elapsed, q.regency_code,
           count(DISTINCT k.card_id) AS credited,
           count(DISTINCT CASE WHEN c.spent > 0 THEN k.card_id END) AS realized
    FROM compared q
    JOIN credits k ON k.regency_code = q.regency_code AND k.period = q.period
    LEFT JOIN card_daily c ON c.card_id = k.card_id
     AND c.local_date >= k.credit_date
     AND CAST(c.local_date AS INT) < least(k.credit_day + q.elapsed, k.end_of_period)
    GROUP BY q.judged, q.judged_period, q.elapsed, q.regency_code
),
peers AS (
    SELECT judged, judged_period,
           median(CAST(realized AS DOUBLE) / credited) AS peer_realization,
           count(*) AS peer_regencies
    FROM figures
    WHERE regency_code <> judged
    GROUP BY judged, judged_period
),
scored AS (
    SELECT f.regency_code, f.judged_period AS period, f.elapsed, f.credited, f.realized,
           CAST(f.realized AS DOUBLE) / f.credited AS realization,
           p.peer_realization, p.peer_regencies,
           binomial_cdf(f.realized, f.credited, p.peer_realization) AS p_value
    FROM figures f
    JOIN peers p ON p.judged = f.judged AND p.judged_period = f.judged_period
    WHERE f.regency_code = f.judged
)
SELECT s.regency_code AS entity_id,
       s.regency_code,
       p_score(s.p_value) AS score,
       s.period,
       s.elapsed AS days_after_credit,
       s.credited,
       s.realized,
       round(100.0 * s.realization, 1) AS realization_pct,
       round(100.0 * s.peer_realization, 1) AS peer_realization_pct,
       s.peer_regencies,
       s.p_value,
       1e-6 AS p_threshold,
       10 AS min_gap_points
FROM scored s
WHERE s.peer_regencies >= 2 AND s.p_value < 1e-6 AND s.realization <= s.peer_realization - 0.10
