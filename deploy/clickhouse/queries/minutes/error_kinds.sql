-- Candidate errors per endpoint × kind (timeout, connect, …).
-- Parameters: ClickHouse query parameters, as the queries one level up; since and until are
-- compared with the start of each minute (pass whole minutes). Reads shadowdiff.diff_minutes,
-- the per-minute aggregates: fast over weeks, and each delivered copy of a redelivered exchange
-- counts (the queries one level up and the report count it once).
SELECT
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    detail_key AS kind,
    countMerge(records) AS errors
FROM shadowdiff.diff_minutes
WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat') AND outcome = 'error'
  AND minute >= {since:DateTime} AND minute < {until:DateTime}
GROUP BY endpoint, candidate, kind
ORDER BY errors DESC, endpoint, candidate, kind
