-- Mismatch rate per endpoint and candidate, per time bucket (`{bucket_seconds:UInt32}` seconds).
-- Parameters: ClickHouse query parameters (`--param_experiment=…` with clickhouse-client,
-- `param_experiment=…` over HTTP); see deploy/clickhouse/README.md.
SELECT
    toDateTime(intDiv(toUInt32(captured_at), {bucket_seconds:UInt32}) * {bucket_seconds:UInt32}) AS time,
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    countIf(outcome IN ('match', 'mismatch')) AS compared,
    countIf(outcome = 'mismatch') AS mismatched,
    if(compared = 0, 0, mismatched / compared) AS mismatch_rate
FROM (
        -- Each (exchange, target, role) once, the copy the report counts (redeliveries).
        SELECT * FROM shadowdiff.diff_records
        WHERE experiment = {experiment:String}
          AND captured_at >= {since:DateTime} AND captured_at < {until:DateTime}
        ORDER BY multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), ifNull(target_latency_us, 0)
        LIMIT 1 BY exchange_id, target, role
    )
WHERE role NOT IN ('secondary', 'repeat')
GROUP BY time, endpoint, candidate
ORDER BY time, endpoint, candidate
