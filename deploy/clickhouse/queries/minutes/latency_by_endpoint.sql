-- Control and candidate latency p50 and p99 per endpoint × candidate, in milliseconds (t-digest estimates).
-- Parameters: ClickHouse query parameters, as the queries one level up; since and until are
-- compared with the start of each minute (pass whole minutes). Reads shadowdiff.diff_minutes,
-- the per-minute aggregates: fast over weeks, and each delivered copy of a redelivered exchange
-- counts (the queries one level up and the report count it once).
SELECT
    endpoint,
    candidate,
    cl[1] / 1000 AS control_p50_ms,
    cl[2] / 1000 AS control_p99_ms,
    tl[1] / 1000 AS candidate_p50_ms,
    tl[2] / 1000 AS candidate_p99_ms
FROM (
    SELECT
        concat(method, ' ', route) AS endpoint,
        target AS candidate,
        quantilesTDigestIfMerge(0.5, 0.99)(control_latency) AS cl,
        quantilesTDigestIfMerge(0.5, 0.99)(target_latency) AS tl
    FROM shadowdiff.diff_minutes
    WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat')
      AND outcome IN ('match', 'mismatch')
      AND minute >= {since:DateTime} AND minute < {until:DateTime}
    GROUP BY endpoint, candidate
)
ORDER BY endpoint, candidate
