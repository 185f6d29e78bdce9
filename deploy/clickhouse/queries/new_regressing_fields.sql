-- Fields (aggregate path and kind) that differ, not as noise, since `{since:DateTime}` and never did before it in the experiment.
-- Parameters: ClickHouse query parameters (`--param_experiment=…` with clickhouse-client,
-- `param_experiment=…` over HTTP); see deploy/clickhouse/README.md.
SELECT
    concat(method, ' ', route) AS endpoint,
    target AS candidate,
    path,
    kind,
    countIf(captured_at >= {since:DateTime}) AS exchanges_since,
    min(captured_at) AS first_seen
FROM (
        -- Each (exchange, target, role) once, the copy the report counts (redeliveries).
        SELECT * FROM shadowdiff.diff_records
        WHERE experiment = {experiment:String}
        ORDER BY multiIf(outcome = 'mismatch', 0, outcome = 'error', 1, outcome = 'match', 2, outcome = 'blocked', 3, 4), fingerprint, ifNull(target_status, 0), ifNull(target_latency_us, 0)
        LIMIT 1 BY exchange_id, target, role
    )
ARRAY JOIN field_path AS path, field_kind AS kind, field_noise AS noise
WHERE role NOT IN ('secondary', 'repeat') AND outcome IN ('match', 'mismatch') AND noise = 0
  AND captured_at < {until:DateTime}
GROUP BY endpoint, candidate, path, kind
HAVING countIf(captured_at < {since:DateTime}) = 0 AND exchanges_since > 0
ORDER BY exchanges_since DESC, endpoint, candidate, path
