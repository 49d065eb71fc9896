// A scripted session of Node's `pg` against citybrain's wire protocol: the same spec and
// output as session.py (see there), for the client "node-pg". Used by
// crates/cli/tests/pgwire.rs with NODE_PATH pointing at scripts/install-pg-clients' packages.
const fs = require("fs");
const { Client, types } = require("pg");

// Timestamps as text, so microseconds survive (a JS Date keeps milliseconds).
const micros = (text) => {
  const m = text.match(/^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}(?::?\d{2})?)?$/);
  if (!m) throw new Error(`not a timestamp: ${text}`);
  let zone = m[4] || "Z";
  if (/^[+-]\d{2}$/.test(zone)) zone += ":00";
  const ms = Date.parse(`${m[1]}T${m[2]}${zone}`);
  const frac = (m[3] || ".0").slice(1).padEnd(6, "0").slice(0, 6);
  return { ts: BigInt(ms) * 1000n + BigInt(frac) };
};
types.setTypeParser(1184, micros);
types.setTypeParser(1114, micros);
types.setTypeParser(1082, (text) => ({ date: text }));
types.setTypeParser(20, (text) => BigInt(text));
types.setTypeParser(701, parseFloat);

const native = (param) => {
  const [[kind, value]] = Object.entries(param);
  return kind === "ts" ? new Date(value) : value;
};

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const out = {};
  for (const session of spec.sessions) {
    const client = new Client({
      host: spec.host, port: spec.port, database: "citybrain",
      user: session.user, password: session.password,
    });
    await client.connect();
    await client.query("SET purpose = 'pgwire test'");
    const results = {};
    for (const q of session.queries) {
      const res = await client.query({ text: q.sql, values: q.params.map(native) });
      results[q.name] = res.rows;
    }
    await client.end();
    out[session.user] = results;
  }
  // BigInts (int8, timestamps) as plain JSON numbers.
  const text = JSON.stringify({ "node-pg": out }, (_, v) =>
    typeof v === "bigint" ? `__big__${v}` : v);
  process.stdout.write(text.replace(/"__big__(-?\d+)"/g, "$1"));
}

main().catch((e) => { console.error(e); process.exit(1); });
