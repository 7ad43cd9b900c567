-- Driven by crates/server/tests/psql.rs through the real psql binary.
\set ON_ERROR_STOP on
CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(8,2) CHECK (price >= 0));
BEGIN;
INSERT INTO items VALUES (1, 'apple', 0.50), (2, 'pear', 0.75);
SAVEPOINT before_cherry;
INSERT INTO items VALUES (3, 'cherry', 3.00);
ROLLBACK TO SAVEPOINT before_cherry;
COMMIT;
\copy items FROM stdin
4	plum	1.25
5	fig	\N
\.
\copy items (id, name) FROM stdin WITH (FORMAT csv, HEADER true)
id,name
6,"kiwi, gold"
\.
UPDATE items SET price = price * 2 WHERE id <= 2;
\echo ---rows
SELECT id, name, price FROM items ORDER BY id;
\echo ---copy
\copy (SELECT id, name FROM items WHERE id >= 5 ORDER BY id) TO stdout WITH (FORMAT csv)
\echo ---status
SHOW transaction_isolation;
