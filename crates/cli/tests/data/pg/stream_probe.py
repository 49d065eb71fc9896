"""Whether the wire hands out rows while the statement is still producing them.

Reads a spec (JSON, argv[1]): {"host", "port", "user", "password", "sql", "audit_url",
"audit_token"}. Reads the statement's first row with psycopg's stream() (single-row mode,
rows taken as they arrive), then asks the audit trail (HTTP) whether the call has been
closed yet: a closing record exists only once the statement has produced its last row.
Then stops reading and waits for the closing record. Prints what it saw as JSON. Used by
crates/cli/tests/pgwire.rs.
"""

import json
import sys
import time
import urllib.request

import psycopg


def closing_records(spec):
    request = urllib.request.Request(
        spec["audit_url"], headers={"Authorization": "Bearer " + spec["audit_token"]})
    with urllib.request.urlopen(request) as response:
        calls = json.load(response)["calls"]
    return [c for c in calls if c.get("closes") is not None and c["detail"].startswith(spec["sql"])]


def main():
    spec = json.load(open(sys.argv[1]))
    out = {}
    conn = psycopg.connect(host=spec["host"], port=spec["port"], dbname="citybrain",
                           user=spec["user"], password=spec["password"], autocommit=True,
                           options="-c purpose=stream\\ probe")
    with conn.cursor() as cur:
        rows = cur.stream(spec["sql"])
        first = next(rows)
        out["first_row_columns"] = len(first)
        out["closed_at_first_row"] = len(closing_records(spec))
    # Leaving the cursor with the result unread: psycopg cancels the statement.
    conn.close()
    deadline = time.monotonic() + 60
    while not closing_records(spec) and time.monotonic() < deadline:
        time.sleep(0.05)
    closed = closing_records(spec)
    out["closed_after"] = len(closed)
    out["closing_detail"] = closed[0]["detail"] if closed else None
    out["closing_rows"] = closed[0]["rows"] if closed else None
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
