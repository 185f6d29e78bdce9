-- Control and candidate latency p50 and p99 per endpoint, in milliseconds (nearest rank, as the report).
-- Parameters: ClickHouse query parameters (`--param_experiment=…` with clickhouse-client,
-- `param_experiment=…` over HTTP); see deploy/clickhouse/README.md.
SELECT
    endpoint,
    candidate,
    if(empty(cl), 0, cl[toUInt64(greatest(1, ceil(0.5 * length(cl))))]) / 1000 AS control_p50_ms,
    if(empty(cl), 0, cl[toUInt64(greatest(1, ceil(0.99 * length(cl))))]) / 1000 AS control_p99_ms,
    if(empty(tl), 0, tl[toUInt64(greatest(1, ceil(0.5 * length(tl))))]) / 1000 AS candidate_p50_ms,
    if(empty(tl), 0, tl[toUInt64(greatest(1, ceil(0.99 * length(tl))))]) / 1000 AS candidate_p99_ms
FROM (
    SELECT
        concat(method, ' ', route) AS endpoint,
        target AS candidate,
        arraySort(groupArrayIf(assumeNotNull(control_latency_us), outcome IN ('match', 'mismatch') AND isNotNull(control_latency_us))) AS cl,
        arraySort(groupArrayIf(assumeNotNull(target_latency_us), outcome IN ('match', 'mismatch') AND isNotNull(target_latency_us))) AS tl
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
)
ORDER BY endpoint, candidate
