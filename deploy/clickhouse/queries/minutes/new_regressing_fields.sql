-- Fields (path × kind) differing, not as noise, since `since` and never before it.
-- Parameters: ClickHouse query parameters, as the queries one level up; since and until are
-- compared with the start of each minute (pass whole minutes). Reads shadowdiff.diff_minutes,
-- the per-minute aggregates: fast over weeks, and each delivered copy of a redelivered exchange
-- counts (the queries one level up and the report count it once).
SELECT
    endpoint,
    candidate,
    arrayStringConcat(arraySlice(parts, 1, length(parts) - 1), '\t') AS path,
    parts[-1] AS kind,
    sum(since) AS exchanges_since,
    min(first) AS first_seen
FROM (
    -- Per signature first (its fields are the same in every exchange), then per field.
    SELECT
        concat(method, ' ', route) AS endpoint,
        target AS candidate,
        countMergeIf(records, minute >= {since:DateTime}) AS since,
        countMergeIf(records, minute < {since:DateTime}) AS before,
        minMerge(first_seen) AS first,
        groupUniqArrayArrayMerge(fields) AS fs
    FROM shadowdiff.diff_minutes
    -- Only mismatches carry differences that are not noise.
    WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat')
      AND outcome = 'mismatch' AND minute < {until:DateTime}
    GROUP BY endpoint, candidate, fingerprint
)
ARRAY JOIN arrayMap(f -> splitByChar('\t', f), fs) AS parts
GROUP BY endpoint, candidate, parts
HAVING sum(before) = 0 AND exchanges_since > 0
ORDER BY exchanges_since DESC, endpoint, candidate, path
