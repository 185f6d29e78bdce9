#!/usr/bin/env python3
"""Runs SQL in an embedded current ClickHouse (chdb, ClickHouse 26.x in-process) for the tests.

Reads one JSON request on stdin: {"path": DIR, "statements": [SQL, ...], "query": SQL,
"params": {NAME: VALUE}}. Runs the statements in order in the session stored under DIR, then the
query with server-side query parameters, and prints its rows as JSONEachRow. Any error goes to
stderr with exit code 1. Used by clickhouse/tests/chdb.rs; scripts/test.sh installs chdb-core
and points SHADOWDIFF_TEST_CHDB_PYTHON at the Python that has it.
"""
import json
import sys

from chdb import session


def main() -> int:
    request = json.load(sys.stdin)
    s = session.Session(request["path"])
    try:
        for statement in request.get("statements", []):
            s.query(statement)
        if "query" in request:
            out = s.query(request["query"], "JSONEachRow", params=request.get("params", {}))
            sys.stdout.write(str(out))
    except Exception as error:  # chdb raises its own error types; all of them fail the call
        print(f"chdb: {error}", file=sys.stderr)
        return 1
    finally:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
