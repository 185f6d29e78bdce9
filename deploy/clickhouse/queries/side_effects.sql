-- Writes the side-effect guard blocked before replay, and writes the egress sandbox caught a candidate making, per endpoint.
-- Parameters: ClickHouse query parameters (`--param_experiment=…` with clickhouse-client,
-- `param_experiment=…` over HTTP); see deploy/clickhouse/README.md.
SELECT endpoint, candidate, what, name, count
FROM (
    SELECT concat(method, ' ', route) AS endpoint, target AS candidate,
        'blocked' AS what, ifNull(detail, 'blocked') AS name, count() AS count
    FROM (
        -- Each (exchange, target, role) once, the copy the report counts (redeliveries).
        SELECT * FROM shadowdiff.diff_records
        WHERE experiment = {experiment:String}
          AND captured_at >= {since:DateTime} AND captured_at < {until:DateTime}
        ORDER BY multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), ifNull(target_latency_us, 0)
        LIMIT 1 BY exchange_id, target, role
    )
    WHERE role NOT IN ('secondary', 'repeat') AND outcome = 'blocked'
    GROUP BY endpoint, candidate, name
    UNION ALL
    SELECT concat(method, ' ', route) AS endpoint, target AS candidate,
        'side_effect' AS what, effect AS name, count() AS count
    FROM (
        -- Each (exchange, target, role) once, the copy the report counts (redeliveries).
        SELECT * FROM shadowdiff.diff_records
        WHERE experiment = {experiment:String}
          AND captured_at >= {since:DateTime} AND captured_at < {until:DateTime}
        ORDER BY multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), ifNull(target_latency_us, 0)
        LIMIT 1 BY exchange_id, target, role
    )
    ARRAY JOIN side_effects AS effect
    WHERE role NOT IN ('secondary', 'repeat')
    GROUP BY endpoint, candidate, name
)
ORDER BY count DESC, endpoint, candidate, what, name
