-- Compared, mismatched and mismatch rate per endpoint × candidate per time bucket (bucket_seconds, a multiple of 60).
-- Parameters: ClickHouse query parameters, as the queries one level up; since and until are
-- compared with the start of each minute (pass whole minutes). Reads shadowdiff.diff_minutes,
-- the per-minute aggregates: fast over weeks, and each delivered copy of a redelivered exchange
-- counts (the queries one level up and the report count it once).
SELECT
    time,
    endpoint,
    candidate,
    sumIf(n, outcome IN ('match', 'mismatch')) AS compared,
    sumIf(n, outcome = 'mismatch') AS mismatched,
    if(compared = 0, 0, mismatched / compared) AS mismatch_rate
FROM (
    SELECT
        toDateTime(intDiv(toUInt32(minute), {bucket_seconds:UInt32}) * {bucket_seconds:UInt32}) AS time,
        concat(method, ' ', route) AS endpoint,
        target AS candidate,
        outcome,
        countMerge(records) AS n
    FROM shadowdiff.diff_minutes
    WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat')
      AND minute >= {since:DateTime} AND minute < {until:DateTime}
    GROUP BY time, endpoint, candidate, outcome
)
GROUP BY time, endpoint, candidate
ORDER BY time, endpoint, candidate
