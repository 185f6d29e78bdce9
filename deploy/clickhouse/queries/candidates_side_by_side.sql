-- Every candidate of each endpoint on one row each: compared, mismatch rate, errors, blocked, candidate p50.
-- Parameters: ClickHouse query parameters (`--param_experiment=…` with clickhouse-client,
-- `param_experiment=…` over HTTP); see deploy/clickhouse/README.md.
SELECT
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    countIf(outcome IN ('match', 'mismatch')) AS compared,
    countIf(outcome = 'mismatch') AS mismatched,
    if(compared = 0, 0, mismatched / compared) AS mismatch_rate,
    countIf(outcome = 'error') AS errors,
    countIf(outcome = 'blocked') AS blocked,
    quantileExactIf(assumeNotNull(target_latency_us), outcome IN ('match', 'mismatch') AND isNotNull(target_latency_us)) / 1000 AS candidate_median_ms
FROM (
        -- Each (exchange, target, role) once, the copy the report counts (redeliveries).
        SELECT * FROM shadowdiff.diff_records
        WHERE experiment = {experiment:String}
          AND captured_at >= {since:DateTime} AND captured_at < {until:DateTime}
        ORDER BY multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), ifNull(target_latency_us, 0)
        LIMIT 1 BY exchange_id, target, role
    )
WHERE role NOT IN ('secondary', 'repeat')
GROUP BY endpoint, candidate
ORDER BY endpoint, candidate
