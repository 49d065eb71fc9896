"""A scripted session of each Python PostgreSQL client against citybrain's wire protocol.

Reads a spec (JSON, argv[1]): {"host", "port", "sessions": [{"user", "password",
"queries": [{"name", "sql" (with $1, $2 ...), "params": [{"int"|"text"|"ts": value}],
"stream" (optional: read row by row, psycopg's stream() and an asyncpg cursor)}]}]}.
Prints {client: {user: {query: rows}}} where rows are lists of {column: value}, values
normalised alike for every client: timestamps as {"ts": microseconds since the epoch},
dates as {"date": "YYYY-MM-DD"}, decimals as floats. Used by crates/cli/tests/pgwire.rs.
"""

import asyncio
import datetime as dt
import decimal
import json
import re
import sys

import asyncpg
import pandas
import psycopg
import sqlalchemy

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def norm(value):
    if value is None:
        return None
    if isinstance(value, pandas.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return {"ts": (value - EPOCH) // dt.timedelta(microseconds=1)}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalars from pandas
        return norm(value.item())
    if isinstance(value, float) and value != value:
        return None
    return value


def native(param):
    (kind, value), = param.items()
    if kind == "ts":
        return dt.datetime.fromisoformat(value)
    return value


def rows_of(columns, records):
    return [{c: norm(v) for c, v in zip(columns, r)} for r in records]


def percent(sql):
    return re.sub(r"\$\d+", "%s", sql)


def psycopg_session(spec, session, binary):
    out = {}
    with psycopg.connect(
        host=spec["host"], port=spec["port"], dbname="citybrain",
        user=session["user"], password=session["password"],
        options="-c purpose=pgwire\\ test",
    ) as conn:
        for q in session["queries"]:
            params = [native(p) for p in q["params"]] or None
            with conn.cursor(binary=binary) as cur:
                if q.get("stream"):
                    # Single-row mode: rows are taken as the server sends them.
                    records, columns = [], None
                    for record in cur.stream(percent(q["sql"]), params):
                        if columns is None:
                            columns = [d.name for d in cur.description]
                        records.append(record)
                else:
                    cur.execute(percent(q["sql"]), params)
                    columns = [d.name for d in cur.description]
                    records = cur.fetchall()
                out[q["name"]] = rows_of(columns, records)
        conn.rollback()
    return out


async def asyncpg_session(spec, session):
    out = {}
    conn = await asyncpg.connect(
        host=spec["host"], port=spec["port"], database="citybrain",
        user=session["user"], password=session["password"], ssl=False,
        server_settings={"purpose": "pgwire test"},
    )
    try:
        for q in session["queries"]:
            statement = await conn.prepare(q["sql"])
            params = [native(p) for p in q["params"]]
            if q.get("stream"):
                # A cursor: Execute with a row limit, the portal suspended between fetches.
                async with conn.transaction():
                    records = [r async for r in statement.cursor(*params, prefetch=1000)]
            else:
                records = await statement.fetch(*params)
            columns = [a.name for a in statement.get_attributes()]
            out[q["name"]] = rows_of(columns, [tuple(r) for r in records])
    finally:
        await conn.close()
    return out


def sqlalchemy_session(spec, session):
    out = {}
    url = sqlalchemy.URL.create(
        "postgresql+psycopg", username=session["user"], password=session["password"],
        host=spec["host"], port=spec["port"], database="citybrain",
    )
    engine = sqlalchemy.create_engine(url, connect_args={"options": "-c purpose=pgwire\\ test"})
    with engine.connect() as conn:
        for q in session["queries"]:
            sql = re.sub(r"\$(\d+)", r":p\1", q["sql"])
            params = {f"p{i + 1}": native(p) for i, p in enumerate(q["params"])}
            frame = pandas.read_sql(sqlalchemy.text(sql), conn, params=params)
            records = frame.astype(object).where(frame.notna(), None).itertuples(index=False)
            out[q["name"]] = rows_of(list(frame.columns), records)
    engine.dispose()
    return out


def main():
    spec = json.loads(open(sys.argv[1]).read())
    result = {"psycopg-text": {}, "psycopg-binary": {}, "asyncpg": {}, "sqlalchemy-pandas": {}}
    for session in spec["sessions"]:
        user = session["user"]
        result["psycopg-text"][user] = psycopg_session(spec, session, binary=False)
        result["psycopg-binary"][user] = psycopg_session(spec, session, binary=True)
        result["asyncpg"][user] = asyncio.run(asyncpg_session(spec, session))
        result["sqlalchemy-pandas"][user] = sqlalchemy_session(spec, session)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
