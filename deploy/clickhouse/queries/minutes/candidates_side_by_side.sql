-- Every candidate of each endpoint on one row each: compared, mismatch rate, errors, blocked, candidate p50 (t-digest).
-- Parameters: ClickHouse query parameters, as the queries one level up; since and until are
-- compared with the start of each minute (pass whole minutes). Reads shadowdiff.diff_minutes,
-- the per-minute aggregates: fast over weeks, and each delivered copy of a redelivered exchange
-- counts (the queries one level up and the report count it once).
SELECT
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    countMergeIf(records, outcome IN ('match', 'mismatch')) AS compared,
    countMergeIf(records, outcome = 'mismatch') AS mismatched,
    if(compared = 0, 0, mismatched / compared) AS mismatch_rate,
    countMergeIf(records, outcome = 'error') AS errors,
    countMergeIf(records, outcome = 'blocked') AS blocked,
    quantilesTDigestIfMergeIf(0.5, 0.99)(target_latency, outcome IN ('match', 'mismatch'))[1] / 1000 AS candidate_median_ms
FROM shadowdiff.diff_minutes
WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat')
  AND minute >= {since:DateTime} AND minute < {until:DateTime}
GROUP BY endpoint, candidate
ORDER BY endpoint, candidate
