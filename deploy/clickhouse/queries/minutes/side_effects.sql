-- Writes the guard blocked, and writes the egress sandbox caught, per endpoint × candidate.
-- Parameters: ClickHouse query parameters, as the queries one level up; since and until are
-- compared with the start of each minute (pass whole minutes). Reads shadowdiff.diff_minutes,
-- the per-minute aggregates: fast over weeks, and each delivered copy of a redelivered exchange
-- counts (the queries one level up and the report count it once).
SELECT endpoint, candidate, what, name, count
FROM (
    SELECT concat(method, ' ', route) AS endpoint, target AS candidate,
        'blocked' AS what, detail_key AS name, countMerge(records) AS count
    FROM shadowdiff.diff_minutes
    WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat') AND outcome = 'blocked'
      AND minute >= {since:DateTime} AND minute < {until:DateTime}
    GROUP BY endpoint, candidate, name
    UNION ALL
    SELECT endpoint, candidate, 'side_effect' AS what, effect AS name, sum(n) AS count
    FROM (
        SELECT concat(method, ' ', route) AS endpoint, target AS candidate,
            side_effect_set, countMerge(records) AS n
        FROM shadowdiff.diff_minutes
        WHERE experiment = {experiment:String} AND role NOT IN ('secondary', 'repeat') AND side_effect_set != ''
          AND minute >= {since:DateTime} AND minute < {until:DateTime}
        GROUP BY endpoint, candidate, side_effect_set
    )
    ARRAY JOIN splitByChar('\n', side_effect_set) AS effect
    GROUP BY endpoint, candidate, name
)
ORDER BY count DESC, endpoint, candidate, what, name
