-- Synthetic diff_records rows for bench/dashboards.sh (ClickHouse 18.16 SQL): ROWS rows, three per
-- exchange (two candidates and a secondary), 40 routes, 5% mismatches over 50 signatures, 0.3%
-- errors, blocked writes on POST, spread evenly over DAYS days before now. DB, ROWS, START and
-- STEP are substituted by the script.
INSERT INTO DB.diff_records (exchange_id, captured_at, captured_at_ms, experiment, method, route, target, role, outcome, control_status, target_status, control_latency_us, target_latency_us, fingerprint, detail, notes, side_effects, diff_path, diff_kind, diff_control, diff_candidate, noise_path, noise_kind, noise_control, noise_candidate, noise_reason, field_path, field_kind, field_noise, field_reason, schema_version)
SELECT
    concat('ex-', toString(intDiv(number, 3))) AS exchange_id,
    toDateTime(START + toUInt32(intDiv(number, 3) * STEP)) AS captured_at,
    toUInt64(START + toUInt32(intDiv(number, 3) * STEP)) * 1000 AS captured_at_ms,
    'bench' AS experiment,
    if(number % 7 = 0, 'POST', 'GET') AS method,
    concat('/api/v1/resource', toString(intHash32(intDiv(number, 3)) % 40)) AS route,
    arrayElement(['v2', 'v3', 'secondary'], (number % 3) + 1) AS target,
    if(number % 3 = 2, 'secondary', 'candidate') AS role,
    multiIf(intHash32(number) % 100 < 5, 'mismatch', intHash32(number + 7) % 1000 < 3, 'error', number % 7 = 0 AND intHash32(number) % 10 = 0, 'blocked', 'match') AS outcome,
    toNullable(toUInt16(200)) AS control_status,
    toNullable(toUInt16(if(outcome = 'error', 502, 200))) AS target_status,
    toNullable(toUInt64(1000 + intHash32(number + 1) % 20000)) AS control_latency_us,
    toNullable(toUInt64(1200 + intHash32(number + 2) % 25000)) AS target_latency_us,
    if(outcome = 'mismatch', toUInt64(intHash32(number) % 50), toUInt64(0)) AS fingerprint,
    if(outcome = 'error', 'connection refused', NULL) AS detail,
    emptyArrayString() AS notes,
    if(outcome = 'blocked', ['write POST blocked'], emptyArrayString()) AS side_effects,
    if(outcome = 'mismatch', [concat('body.items[].field', toString(intHash32(number) % 50))], emptyArrayString()) AS diff_path,
    if(outcome = 'mismatch', ['value'], emptyArrayString()) AS diff_kind,
    if(outcome = 'mismatch', [toNullable('1')], arrayFilter(x -> 0, [toNullable('1')])) AS diff_control,
    if(outcome = 'mismatch', [toNullable('2')], arrayFilter(x -> 0, [toNullable('2')])) AS diff_candidate,
    ['headers.date'] AS noise_path, ['header'] AS noise_kind, [toNullable('a')] AS noise_control, [toNullable('b')] AS noise_candidate, ['detector:timestamp'] AS noise_reason,
    arrayConcat(diff_path, noise_path) AS field_path,
    arrayConcat(diff_kind, noise_kind) AS field_kind,
    arrayConcat(arrayMap(x -> toUInt8(0), diff_path), [toUInt8(1)]) AS field_noise,
    arrayConcat(arrayMap(x -> '', diff_path), ['detector:timestamp']) AS field_reason,
    toUInt32(1) AS schema_version
FROM system.numbers LIMIT ROWS
