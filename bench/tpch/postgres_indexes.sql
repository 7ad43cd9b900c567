-- Applied to PostgreSQL only, after the load (see load() in bench/tpch.py): without it
-- PostgreSQL's plans for q17 and q20 scan lineitem once per outer row.
CREATE INDEX lineitem_partkey ON lineitem (l_partkey);
