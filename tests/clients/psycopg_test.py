"""psycopg 3, unmodified, against Kestrel: schema, executemany, COPY, an upsert, transactions
(commit, rollback, a failed block), reads checked value by value. Exits non-zero on a mismatch."""
import datetime
import decimal
import os
import sys

import psycopg

dsn = f"host=127.0.0.1 port={os.environ['KESTREL_PORT']} user=root dbname=defaultdb"
with psycopg.connect(dsn, autocommit=True) as conn:
    conn.execute(
        "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, sku TEXT NOT NULL, qty INT CHECK (qty > 0),"
        " price NUMERIC(8,2), placed TIMESTAMPTZ DEFAULT now(), note TEXT)"
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO orders (sku, qty, price) VALUES (%s, %s, %s)",
            [("a1", 1, decimal.Decimal("9.99")), ("b2", 3, decimal.Decimal("0.50"))],
        )
        with cur.copy("COPY orders (sku, qty, price) FROM STDIN") as copy:
            copy.write_row(("c3", 2, decimal.Decimal("1.25")))
            copy.write_row(("d4", 5, None))
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone()[0] == 4

# Transactions through the connection context (commit on success, rollback on error).
with psycopg.connect(dsn) as conn:
    conn.execute("UPDATE orders SET note = %s WHERE sku = %s", ("gift", "a1"))
    conn.commit()
    conn.execute("DELETE FROM orders")
    conn.rollback()
    try:
        conn.execute("INSERT INTO orders (sku, qty) VALUES (%s, %s)", ("x", 0))
        raise SystemExit("CHECK violation not raised")
    except psycopg.errors.CheckViolation:
        pass
    try:
        conn.execute("SELECT 1")
        raise SystemExit("failed block not reported")
    except psycopg.errors.InFailedSqlTransaction:
        pass
    conn.rollback()
    with conn.transaction():
        conn.execute(
            "INSERT INTO orders (id, sku, qty) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET qty = orders.qty + excluded.qty",
            (1, "a1", 10),
        )
    rows = conn.execute(
        "SELECT id, sku, qty, price, placed, note FROM orders WHERE qty >= %s ORDER BY id", (1,)
    ).fetchall()

assert [r[1] for r in rows] == ["a1", "b2", "c3", "d4"], rows
assert rows[0][2] == 11 and rows[0][5] == "gift", rows[0]
assert rows[0][3] == decimal.Decimal("9.99") and rows[3][3] is None, rows
assert isinstance(rows[0][4], datetime.datetime) and rows[0][4].tzinfo is not None, rows[0]
assert isinstance(rows[0][0], int)
print("psycopg ok")
sys.exit(0)
