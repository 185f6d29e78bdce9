-- Candidate errors (timeouts, refused connections, …) per endpoint and kind.
-- Parameters: ClickHouse query parameters (`--param_experiment=…` with clickhouse-client,
-- `param_experiment=…` over HTTP); see deploy/clickhouse/README.md.
SELECT
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    splitByChar(':', ifNull(detail, 'error'))[1] AS kind,
    count() AS errors
FROM (
        -- Each (exchange, target, role) once, the copy the report counts (redeliveries).
        SELECT * FROM shadowdiff.diff_records
        WHERE experiment = {experiment:String}
          AND captured_at >= {since:DateTime} AND captured_at < {until:DateTime}
        ORDER BY multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), ifNull(target_latency_us, 0)
        LIMIT 1 BY exchange_id, target, role
    )
WHERE role NOT IN ('secondary', 'repeat') AND outcome = 'error'
GROUP BY endpoint, candidate, kind
ORDER BY errors DESC, endpoint, candidate, kind
