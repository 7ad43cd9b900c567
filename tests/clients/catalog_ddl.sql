CREATE TABLE items (id integer PRIMARY KEY, name varchar(20) NOT NULL, qty integer DEFAULT 0 CHECK (qty >= 0), code text UNIQUE, price numeric(10,2));
CREATE INDEX items_name ON items (name);
CREATE SCHEMA inventory;
CREATE TABLE inventory.bins (bin_id bigint PRIMARY KEY, label text);
CREATE VIEW cheap AS SELECT id, name FROM items;
CREATE SEQUENCE tickets;
