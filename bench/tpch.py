#!/usr/bin/env python3
"""TPC-H side by side: Kestrel and PostgreSQL 15 load the same data and run the 22 queries.

Data comes from `tpchgen-cli` (installed with `cargo install` into a cache directory when it
is not on PATH). Both servers start fresh on free loopback ports (see run.py), load every
table with COPY in chunks of `--chunk-rows` rows, and run each query in turn (Kestrel, then
PostgreSQL). Results are compared automatically: in order where the query has ORDER BY,
as sorted rows otherwise; numbers match within a relative 1e-6 (the servers print averages
with different scales). Times, load times and the comparison go to
`<out>/<date>-tpch.{json,md}`. `--quick` runs scale 0.01 to prove the harness; CI runs it
without asserting anything about time. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import PGBIN, REPO, Kestrel, Postgres, log, run  # noqa: E402

HERE = os.path.join(REPO, "bench", "tpch")
TABLES = ["region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]
TPCHGEN_VERSION = "2.0.2"
# Separates fields in psql's unaligned output (never inside TPC-H data).
SEP = "\x1f"


def tpchgen():
    found = shutil.which("tpchgen-cli")
    if found:
        return found
    root = os.environ.get("KESTREL_TOOLS", os.path.join(os.path.expanduser("~"), ".cache",
                                                         "kestrel-tools"))
    path = os.path.join(root, "bin", "tpchgen-cli")
    if not os.path.exists(path):
        log(f"installing tpchgen-cli {TPCHGEN_VERSION} into {root}")
        env = dict(os.environ)
        env.pop("CARGO_TARGET_DIR", None)  # its own build directory, not Kestrel's
        run(["cargo", "install", "--locked", "--quiet", "tpchgen-cli", "--version",
             f"={TPCHGEN_VERSION}", "--root", root], env=env)
    return path


def generate(scale, workdir):
    out = os.path.join(workdir, "data")
    os.makedirs(out)
    run([tpchgen(), "-s", str(scale), "-f", "csv", "-o", out])
    return {t: os.path.join(out, f"{t}.csv") for t in TABLES}


def chunks(path, rows):
    """The file's data lines in chunks of `rows` (its header line dropped)."""
    with open(path) as f:
        f.readline()
        buf = []
        for line in f:
            buf.append(line)
            if len(buf) == rows:
                yield "".join(buf)
                buf = []
        if buf:
            yield "".join(buf)


def load(server, files, chunk_rows):
    server.psql(open(os.path.join(HERE, "schema.sql")).read())
    seconds = {}
    for t in TABLES:
        t0 = time.monotonic()
        for data in chunks(files[t], chunk_rows):
            server.psql(f"COPY {t} FROM STDIN (FORMAT csv)", stdin=data)
        seconds[t] = round(time.monotonic() - t0, 2)
        log(f"  {server.name}: {t} loaded in {seconds[t]} s")
    if server.name == "postgres":
        # PostgreSQL plans q17 and q20 as correlated subplans that scan lineitem once per outer
        # row (hours at SF1) unless lineitem's part key is indexed; DataFusion decorrelates
        # them into joins and Kestrel would not use the index. A foreign-key index, which
        # TPC-H permits, on PostgreSQL only: it can only make PostgreSQL faster.
        t0 = time.monotonic()
        server.psql(open(os.path.join(HERE, "postgres_indexes.sql")).read())
        seconds["postgres_indexes"] = round(time.monotonic() - t0, 2)
    server.psql("ANALYZE")
    return seconds


def query(server, sql, timeout_s):
    """(seconds, rows or None, error or None) of one query."""
    cmd = [f"{PGBIN}/psql", "-X", "-A", "-t", "-F", SEP, "-v", "ON_ERROR_STOP=1",
           "-c", f"SET statement_timeout = {timeout_s * 1000}", "-c", sql]
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, env=server.env(), capture_output=True, text=True,
                             timeout=timeout_s + 30)
    except subprocess.TimeoutExpired:
        return round(time.monotonic() - t0, 3), None, "client timeout"
    elapsed = round(time.monotonic() - t0, 3)
    if res.returncode != 0:
        return elapsed, None, res.stderr.strip().splitlines()[-1] if res.stderr else "failed"
    # One line per row (a row of one NULL is an empty line); the SET's tag comes first.
    lines = res.stdout[:-1].split("\n") if res.stdout else []
    if lines and lines[0] == "SET":
        lines = lines[1:]
    return elapsed, [tuple(ln.split(SEP)) for ln in lines], None


def number(s):
    try:
        return float(s)
    except ValueError:
        return None


def same_field(a, b):
    x, y = number(a), number(b)
    if x is not None and y is not None:
        return abs(x - y) <= 1e-6 * max(1.0, abs(x), abs(y))
    return a.rstrip() == b.rstrip()


def same_rows(a, b):
    return len(a) == len(b) and all(
        len(r) == len(s) and all(same_field(x, y) for x, y in zip(r, s)) for r, s in zip(a, b))


def sort_key(row):
    return tuple((0, f"{n:.4f}", "") if (n := number(f)) is not None else (1, "", f.rstrip())
                 for f in row)


def compare(sql, kestrel_rows, pg_rows):
    """'ok', 'order' (same rows, another order where ORDER BY applies) or 'wrong'."""
    ordered = "order by" in sql.lower().split(")")[-1]
    if ordered and same_rows(kestrel_rows, pg_rows):
        return "ok"
    if same_rows(sorted(kestrel_rows, key=sort_key), sorted(pg_rows, key=sort_key)):
        return "order" if ordered else "ok"
    return "wrong"


def totals(queries):
    """Times summed over the queries both servers answered alike (a timeout is no time)."""
    ok = [q for q in queries if q["status"] == "ok"]
    k_total = round(sum(q["kestrel_s"] for q in ok), 2)
    p_total = round(sum(q["postgres_s"] for q in ok), 2)
    return {"correct": len(ok), "kestrel_s": k_total, "postgres_s": p_total,
            "ratio": round(k_total / p_total, 2) if p_total else None,
            "postgres_failed": [q["name"] for q in queries if q["status"] == "postgres error"]}


def markdown(result):
    lines = [f"# TPC-H SF{result['scale']:g} — {result['date']}", "",
             "| table | Kestrel load s | PostgreSQL load s |", "|---|---|---|"]
    for t in TABLES:
        lines.append(f"| {t} | {result['load']['kestrel'][t]} | {result['load']['postgres'][t]} |")
    lines += ["", "| query | Kestrel s | PostgreSQL s | ratio K/P | rows | result |",
              "|---|---|---|---|---|---|"]
    for q in result["queries"]:
        k, p = q["kestrel_s"], q["postgres_s"]
        ratio = f"{k / p:.2f}" if q["status"] == "ok" and p else "—"
        status = q["status"] if not q.get("error") else f"{q['status']}: {q['error'][:80]}"
        lines.append(f"| {q['name']} | {k} | {p} | {ratio} | {q['rows']} | {status} |")
    t = result["totals"]
    lines += ["", f"Correct: {t['correct']} / {len(result['queries'])}. Total time of the "
              f"{t['correct']} correct queries: Kestrel {t['kestrel_s']} s, PostgreSQL "
              f"{t['postgres_s']} s (ratio {t['ratio']})."]
    if t["postgres_failed"]:
        lines.append(f"PostgreSQL failed (no result to compare): {', '.join(t['postgres_failed'])}.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "kestrel"))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="scale 0.01: proves the harness")
    ap.add_argument("--chunk-rows", type=int, default=200_000, help="rows per COPY statement")
    ap.add_argument("--timeout-s", type=int, default=900, help="per query and server")
    ap.add_argument("--only", help="comma-separated query numbers, e.g. 1,6")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--require-correct", action="store_true",
                    help="exit 1 unless every query's result matches PostgreSQL's")
    args = ap.parse_args()
    scale = 0.01 if args.quick else args.scale
    names = sorted(f for f in os.listdir(os.path.join(HERE, "queries")) if f.endswith(".sql"))
    if args.only:
        want = {int(n) for n in args.only.split(",")}
        names = [n for n in names if int(n[1:3]) in want]
    workdir = tempfile.mkdtemp(prefix="kestrel-tpch-")
    os.chmod(workdir, 0o755)  # PostgreSQL runs as its own user when we are root
    servers = [Kestrel(args.binary, workdir), Postgres(workdir, "1GB")]
    try:
        files = generate(scale, workdir)
        for s in servers:
            s.start()
        loads = {s.name: load(s, files, args.chunk_rows) for s in servers}
        queries = []
        for name in names:
            sql = open(os.path.join(HERE, "queries", name)).read()
            out = {s.name: query(s, sql, args.timeout_s) for s in servers}
            (ks, krows, kerr), (ps, prows, perr) = out["kestrel"], out["postgres"]
            if perr:
                status, err = "postgres error", perr  # nothing to compare with
            else:
                status, err = ("error", kerr) if kerr else (compare(sql, krows, prows), None)
            queries.append({"name": name[:-4], "kestrel_s": ks, "postgres_s": ps,
                            "rows": len(prows) if prows is not None else None,
                            "status": status, "error": err})
            log(f"{name}: Kestrel {ks} s, PostgreSQL {ps} s: {status} {kerr or ''}")
        result = {"date": datetime.date.today().isoformat(), "scale": scale,
                  "load": loads, "queries": queries, "totals": totals(queries)}
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{result['date']}-tpch-sf{scale:g}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown(result))
    print(markdown(result))
    if args.require_correct and result["totals"]["correct"] != len(result["queries"]):
        sys.exit("TPC-H: some results differ from PostgreSQL's (see the table above)")


if __name__ == "__main__":
    main()
