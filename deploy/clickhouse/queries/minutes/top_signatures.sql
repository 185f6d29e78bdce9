-- The five most frequent mismatch signatures per endpoint × candidate, with count, first and last seen, one sample.
-- Parameters: ClickHouse query parameters, as the queries one level up; since and until are
-- compared with the start of each minute (pass whole minutes). Reads shadowdiff.diff_minutes,
-- the per-minute aggregates: fast over weeks, and each delivered copy of a redelivered exchange
-- counts (the queries one level up and the report count it once).
SELECT
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    substring(concat('0000000000000000', lower(hex(fingerprint))), length(lower(hex(fingerprint))) + 1, 16) AS signature,
    countMerge(records) AS exchanges,
    minMerge(first_seen) AS first_seen,
    maxMerge(last_seen) AS last_seen,
    minMerge(sample_exchange_id) AS sample_exchange_id,
    argMinMerge(sample_paths) AS sample_paths
FROM shadowdiff.diff_minutes
WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat') AND outcome = 'mismatch'
  AND minute >= {since:DateTime} AND minute < {until:DateTime}
GROUP BY endpoint, candidate, fingerprint
ORDER BY exchanges DESC, signature ASC
LIMIT 5 BY endpoint, candidate
