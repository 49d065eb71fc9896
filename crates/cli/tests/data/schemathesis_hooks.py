"""schemathesis hooks for crates/cli/tests/api_schema.rs: how to send a generated body as
NDJSON (the ingest route's media type, which schemathesis does not know)."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    # A generated string is sent as it is (records, or garbage the server must refuse with
    # a 4xx); any other value as one JSON line.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return (json.dumps(value) + "\n").encode("utf-8")
