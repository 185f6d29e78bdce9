-- The most frequent mismatch signatures per endpoint and candidate: count, first and last seen, one sample exchange and its differing paths.
-- Parameters: ClickHouse query parameters (`--param_experiment=…` with clickhouse-client,
-- `param_experiment=…` over HTTP); see deploy/clickhouse/README.md.
SELECT
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    substring(concat('0000000000000000', lower(hex(fingerprint))), length(lower(hex(fingerprint))) + 1, 16) AS signature,
    count() AS exchanges,
    min(captured_at) AS first_seen,
    max(captured_at) AS last_seen,
    min(exchange_id) AS sample_exchange_id,
    argMin(diff_path, exchange_id) AS sample_paths
FROM (
        -- Each (exchange, target, role) once, the copy the report counts (redeliveries).
        SELECT * FROM shadowdiff.diff_records
        WHERE experiment = {experiment:String}
          AND captured_at >= {since:DateTime} AND captured_at < {until:DateTime}
        ORDER BY multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), ifNull(target_latency_us, 0)
        LIMIT 1 BY exchange_id, target, role
    )
WHERE role NOT IN ('secondary', 'repeat') AND outcome = 'mismatch'
GROUP BY endpoint, candidate, fingerprint
ORDER BY exchanges DESC, signature ASC
LIMIT 5 BY endpoint, candidate
