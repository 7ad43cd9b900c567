// node-postgres, unmodified, against Kestrel: schema, parameterized writes, an upsert, a
// rolled-back transaction, reads checked value by value. Exits non-zero on any mismatch.
'use strict';
const assert = require('assert');
const { Client } = require('pg');

async function main() {
  const client = new Client({
    host: '127.0.0.1',
    port: Number(process.env.KESTREL_PORT),
    user: 'root',
    database: 'defaultdb',
  });
  await client.connect();
  await client.query(`CREATE TABLE people (
      id SERIAL PRIMARY KEY, email TEXT UNIQUE NOT NULL, name TEXT,
      born DATE, score NUMERIC(6,2) DEFAULT 0, active BOOLEAN DEFAULT true)`);
  for (const [email, name, born, score] of [
    ['ann@x', 'Ann', '1990-01-02', 12.5],
    ['bob@x', 'Bob', null, 7],
  ]) {
    const r = await client.query(
      'INSERT INTO people (email, name, born, score) VALUES ($1, $2, $3, $4) RETURNING id',
      [email, name, born, score]);
    assert.strictEqual(r.rows.length, 1);
  }
  // Upsert with EXCLUDED.
  await client.query(
    `INSERT INTO people (email, name) VALUES ($1, $2)
     ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name`, ['bob@x', 'Robert']);
  // A transaction that rolls back leaves nothing behind.
  await client.query('BEGIN');
  await client.query('INSERT INTO people (email, name) VALUES ($1, $2)', ['cy@x', 'Cy']);
  await client.query('UPDATE people SET active = false');
  await client.query('ROLLBACK');
  // A failed statement inside a transaction aborts it (25P02 until ROLLBACK).
  await client.query('BEGIN');
  await assert.rejects(client.query('INSERT INTO people (email) VALUES ($1)', ['ann@x']),
    (e) => e.code === '23505');
  await assert.rejects(client.query('SELECT 1'), (e) => e.code === '25P02');
  await client.query('ROLLBACK');

  const r = await client.query(
    'SELECT id, email, name, born, score, active FROM people WHERE score >= $1 ORDER BY id', [0]);
  assert.strictEqual(r.rows.length, 2);
  assert.deepStrictEqual(r.rows.map((x) => x.email), ['ann@x', 'bob@x']);
  assert.strictEqual(r.rows[1].name, 'Robert');
  assert.strictEqual(r.rows[0].score, '12.50');
  assert.strictEqual(r.rows[0].active, true);
  assert.ok(r.rows[0].born instanceof Date);
  assert.strictEqual(r.rows[1].born, null);
  assert.strictEqual(typeof r.rows[0].id, 'number');
  const n = await client.query('DELETE FROM people WHERE email = $1', ['ann@x']);
  assert.strictEqual(n.rowCount, 1);
  const c = await client.query('SELECT count(*) AS n FROM people');
  assert.strictEqual(c.rows[0].n, '1');
  await client.end();
  console.log('node-pg ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
