#!/usr/bin/env python3
"""Side-by-side benchmark: Kestrel and PostgreSQL 15 on the same machine, in one run.

Both servers get fresh stores on free loopback ports and durable commits (PostgreSQL:
fsync=on, synchronous_commit=on, shared_buffers=1GB; Kestrel: every commit is fsynced
through its Raft log). Each workload runs on the two servers alternately (K P K P ...) for
`--pairs` pairs, and the report gives per server the median TPS, the median p50/p95/p99
latency, server CPU seconds per run, the peak PSS of the server's processes, failed
transactions, and the ratio Kestrel/PostgreSQL. See bench/README.md.

Only the standard library is used; pgbench and psql come from PostgreSQL 15.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How long a server may take to accept connections.
START_TIMEOUT_S = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, check=True, **kw):
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


# ---------------------------------------------------------------------------------------
# Process accounting: CPU seconds and PSS of a server's process tree, from /proc.


def children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children(p))
    return pids


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(root):
    """User+system CPU of the tree; reaped children count through the root's cutime/cstime."""
    total = 0
    for i, pid in enumerate(tree(root)):
        try:
            f = stat_fields(pid)
        except OSError:
            continue
        # Fields after the name start at 3 (state): utime=14, stime=15, cutime=16, cstime=17.
        total += int(f[11]) + int(f[12])
        if i == 0:
            total += int(f[13]) + int(f[14])
    return total / CLK_TCK


def pss_bytes(root):
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


class PeakSampler:
    """Samples the PSS of a process tree every `interval_s` until stopped."""

    def __init__(self, root, interval_s=0.5):
        self.root, self.interval_s, self.peak = root, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, pss_bytes(self.root))
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, pss_bytes(self.root))


# ---------------------------------------------------------------------------------------
# The two servers.


class Server:
    name = "?"
    proc = None

    def env(self):
        e = dict(os.environ)
        e.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=self.user, PGDATABASE=self.db)
        e.pop("PGPASSWORD", None)
        return e

    def psql(self, sql, stdin=None):
        return run([f"{PGBIN}/psql", "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                   env=self.env(), input=stdin).stdout

    def wait_ready(self):
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.logfile}")
            r = run([f"{PGBIN}/psql", "-X", "-Atc", "SELECT 1"], env=self.env(), check=False)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not accept connections within {START_TIMEOUT_S} s")

    @property
    def root_pid(self):
        return self.proc.pid


class Kestrel(Server):
    name = "kestrel"
    user, db = "root", "defaultdb"

    def __init__(self, binary, workdir):
        self.binary, self.port, self.http_port = binary, free_port(), free_port()
        self.store = os.path.join(workdir, "kestrel-store")
        self.logfile = os.path.join(workdir, "kestrel.log")

    def start(self):
        with open(self.logfile, "w") as out:
            self.proc = subprocess.Popen(
                [self.binary, "start", "--store", self.store,
                 "--listen-addr", f"127.0.0.1:{self.port}",
                 "--http-addr", f"127.0.0.1:{self.http_port}"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready()

    def metrics(self):
        """The counters of /metrics that explain commits and fsyncs."""
        want = ("kestrel_txn_commits_total", "kestrel_raft_log_fsyncs_total",
                "kestrel_raft_log_appends_total", "kestrel_txn_conflicts_total")
        out = {}
        try:
            url = f"http://127.0.0.1:{self.http_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[0] in want:
                        out[parts[0]] = float(parts[1])
        except OSError:
            pass
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Postgres(Server):
    name = "postgres"
    user, db = "postgres", "postgres"

    def __init__(self, workdir, shared_buffers):
        self.port = free_port()
        self.dir = os.path.join(workdir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "log")
        self.shared_buffers = shared_buffers
        os.makedirs(self.dir)
        # initdb refuses to run as root: run the server as the postgres user then.
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_pg:
            shutil.chown(self.dir, "postgres")

    def start(self):
        run(self.as_pg + [f"{PGBIN}/initdb", "-D", self.data, "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--locale=C"])
        opts = [f"port={self.port}", "listen_addresses=127.0.0.1", f"unix_socket_directories={self.dir}",
                "fsync=on", "synchronous_commit=on", f"shared_buffers={self.shared_buffers}",
                "max_connections=200"]
        cmd = self.as_pg + [f"{PGBIN}/postgres", "-D", self.data]
        for o in opts:
            cmd += ["-c", o]
        with open(self.logfile, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.wait_ready()

    @property
    def root_pid(self):
        # With runuser the postmaster is runuser's child.
        if self.as_pg:
            kids = children(self.proc.pid)
            if kids:
                return kids[0]
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# ---------------------------------------------------------------------------------------
# Workloads.

INSERT_SCRIPT = "INSERT INTO bench_insert (v, note) VALUES (:client_id, 'row of client');\n"


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def latencies_ms(prefix_dir):
    vals = []
    for name in os.listdir(prefix_dir):
        with open(os.path.join(prefix_dir, name)) as f:
            for line in f:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us ...; a failed
                # transaction logs "failed"/"serialization" instead of a time.
                if len(parts) >= 3 and parts[2].isdigit():
                    vals.append(int(parts[2]) / 1000.0)
    vals.sort()
    return vals


def parse_pgbench(stdout):
    out = {"tps": None, "transactions": 0, "failed": 0, "retried": 0}
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("tps = "):
            out["tps"] = float(line.split()[2])
        elif line.startswith("number of transactions actually processed:"):
            out["transactions"] = int(line.split(":")[1].split()[0].split("/")[0])
        elif line.startswith("number of failed transactions:"):
            out["failed"] = int(line.split(":")[1].split()[0])
        elif line.startswith("number of transactions retried:"):
            out["retried"] = int(line.split(":")[1].split()[0])
    return out


def pgbench_run(server, args, seconds, workdir):
    logdir = tempfile.mkdtemp(prefix="pgblog-", dir=workdir)
    cmd = [f"{PGBIN}/pgbench", "-n", "-T", str(seconds), "--max-tries=20",
           "-l", f"--log-prefix={logdir}/tx"] + args
    cpu0 = cpu_seconds(server.root_pid)
    with PeakSampler(server.root_pid) as peak:
        res = run(cmd, env=server.env(), check=False)
    time.sleep(0.3)  # let PostgreSQL reap the backends, so their CPU is counted
    cpu = cpu_seconds(server.root_pid) - cpu0
    if res.returncode not in (0, 2):  # 2: some transactions failed, reported below
        raise RuntimeError(f"pgbench on {server.name} failed:\n{res.stdout}\n{res.stderr}")
    r = parse_pgbench(res.stdout)
    lat = latencies_ms(logdir)
    shutil.rmtree(logdir, ignore_errors=True)
    r.update(p50_ms=percentile(lat, 0.50), p95_ms=percentile(lat, 0.95),
             p99_ms=percentile(lat, 0.99), cpu_s=round(cpu, 2), peak_pss_bytes=peak.peak)
    return r


def copy_file(rows, workdir):
    path = os.path.join(workdir, f"copy-{rows}.csv")
    with open(path, "w") as f:
        for i in range(1, rows + 1):
            f.write(f"{i},{i % 1000},name {i},{i * 0.5}\n")
    return path


def copy_run(server, path, rows):
    server.psql("DROP TABLE IF EXISTS bench_copy")
    server.psql("CREATE TABLE bench_copy (id BIGINT PRIMARY KEY, a INT, b TEXT, c FLOAT8)")
    cpu0 = cpu_seconds(server.root_pid)
    with PeakSampler(server.root_pid) as peak, open(path) as data:
        t0 = time.monotonic()
        server.psql("COPY bench_copy FROM STDIN (FORMAT csv)", stdin=data.read())
        elapsed = time.monotonic() - t0
    time.sleep(0.3)
    cpu = cpu_seconds(server.root_pid) - cpu0
    count = int(server.psql("SELECT count(*) FROM bench_copy").strip())
    if count != rows:
        raise RuntimeError(f"COPY into {server.name} left {count} rows, not {rows}")
    return {"seconds": round(elapsed, 3), "tps": round(rows / elapsed, 1), "transactions": 1,
            "failed": 0, "retried": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None,
            "cpu_s": round(cpu, 2), "peak_pss_bytes": peak.peak}


def workloads(cfg):
    return [
        ("tpcb_c1", "pgbench TPC-B -M prepared -c 1", ["-M", "prepared", "-c", "1", "-j", "1"]),
        ("tpcb_c8", "pgbench TPC-B -M prepared -c 8", ["-M", "prepared", "-c", "8", "-j", "2"]),
        ("tpcb_c32", "pgbench TPC-B -M prepared -c 32", ["-M", "prepared", "-c", "32", "-j", "2"]),
        ("select_c8", "pgbench -S -M prepared -c 8", ["-S", "-M", "prepared", "-c", "8", "-j", "2"]),
        ("insert_c8", "single-row autocommit INSERT -c 8",
         ["-f", cfg.insert_script, "-M", "prepared", "-c", "8", "-j", "2"]),
        ("copy", f"COPY {cfg.copy_rows:,} rows into a table with a primary key", None),
    ]


# ---------------------------------------------------------------------------------------
# The run.


def summarize(runs):
    def med(key):
        vals = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(vals), 3) if vals else None

    return {
        "tps": med("tps"), "seconds": med("seconds"), "p50_ms": med("p50_ms"),
        "p95_ms": med("p95_ms"), "p99_ms": med("p99_ms"), "cpu_s": med("cpu_s"),
        "peak_pss_mb": round(max(r["peak_pss_bytes"] for r in runs) / 2**20, 1),
        "failed": sum(r["failed"] for r in runs), "retried": sum(r["retried"] for r in runs),
        "transactions": sum(r["transactions"] for r in runs),
    }


def markdown(result):
    lines = [
        f"Kestrel vs PostgreSQL 15 — {result['date']} ({result['mode']}, scale {result['scale']}, "
        f"{result['seconds']} s per run, {result['pairs']} pairs, {result['cpus']} CPUs)",
        "",
        "| workload | Kestrel | PostgreSQL | ratio K/P | K p50/p95/p99 ms | P p50/p95/p99 ms "
        "| K CPU s | P CPU s | K peak MB | P peak MB | K failed | P failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def lat(s):
        return "/".join("-" if s[k] is None else f"{s[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms"))

    for w in result["workloads"]:
        k, p = w["kestrel"], w["postgres"]
        if w["name"] == "copy":
            kv, pv = f"{k['seconds']} s", f"{p['seconds']} s"
        else:
            kv, pv = f"{k['tps']} tps", f"{p['tps']} tps"
        ratio = "-" if w["ratio"] is None else f"{w['ratio']:.3f}"
        lines.append(f"| {w['title']} | {kv} | {pv} | {ratio} | {lat(k)} | {lat(p)} | {k['cpu_s']} "
                     f"| {p['cpu_s']} | {k['peak_pss_mb']} | {p['peak_pss_mb']} | {k['failed']} "
                     f"| {p['failed']} |")
    lines.append("")
    lines.append("ratio: TPS Kestrel/PostgreSQL (higher is better); for COPY, time "
                 "Kestrel/PostgreSQL (lower is better). CPU s: server CPU per run (median). "
                 "Peak MB: largest PSS of the server's processes during the workload.")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "kestrel"))
    ap.add_argument("--quick", action="store_true", help="small and short: proves the harness")
    ap.add_argument("--pairs", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--scale", type=int)
    ap.add_argument("--copy-rows", type=int)
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    cfg = ap.parse_args()
    cfg.pairs = cfg.pairs or 3
    cfg.seconds = cfg.seconds or (3 if cfg.quick else 30)
    cfg.scale = cfg.scale or (1 if cfg.quick else 10)
    cfg.copy_rows = cfg.copy_rows or (100_000 if cfg.quick else 1_000_000)
    if not os.access(cfg.binary, os.X_OK):
        sys.exit(f"no Kestrel binary at {cfg.binary} (bench/run.sh builds it)")

    workdir = tempfile.mkdtemp(prefix="kestrel-bench-")
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        os.chmod(workdir, 0o777)
    cfg.insert_script = os.path.join(workdir, "insert.sql")
    with open(cfg.insert_script, "w") as f:
        f.write(INSERT_SCRIPT)
    servers = [Kestrel(cfg.binary, workdir), Postgres(workdir, "1GB")]
    started = time.monotonic()
    try:
        result = bench(cfg, servers, workdir)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - started, 1)
    os.makedirs(cfg.out, exist_ok=True)
    stem = result["date"] + ("-quick" if cfg.quick else "")
    with open(os.path.join(cfg.out, stem + ".json"), "w") as f:
        json.dump(result, f, indent=2)
    table = markdown(result)
    with open(os.path.join(cfg.out, stem + ".md"), "w") as f:
        f.write(table + "\n")
    print(table)
    log(f"results: {os.path.join(cfg.out, stem)}.json/.md ({result['wall_s']} s)")


def bench(cfg, servers, workdir):
    for s in servers:
        log(f"starting {s.name} on port {s.port}")
        s.start()
    init = {}
    for s in servers:
        log(f"pgbench -i -s {cfg.scale} on {s.name}")
        t0 = time.monotonic()
        run([f"{PGBIN}/pgbench", "-i", "-s", str(cfg.scale)], env=s.env())
        init[s.name] = round(time.monotonic() - t0, 2)
        s.psql("CREATE TABLE bench_insert (id BIGSERIAL PRIMARY KEY, v INT, note TEXT)")
    wanted = set(cfg.only.split(",")) if cfg.only else None
    copy_path = None
    result = {
        "date": datetime.date.today().isoformat(), "mode": "quick" if cfg.quick else "full",
        "scale": cfg.scale, "seconds": cfg.seconds, "pairs": cfg.pairs,
        "cpus": os.cpu_count(), "init_s": init, "workloads": [],
    }
    for name, title, args in workloads(cfg):
        if wanted and name not in wanted:
            continue
        runs = {s.name: [] for s in servers}
        metrics = []
        for pair in range(cfg.pairs):
            for s in servers:
                log(f"{name}: pair {pair + 1}/{cfg.pairs} on {s.name}")
                m0 = s.metrics() if isinstance(s, Kestrel) else None
                if args is None:
                    copy_path = copy_path or copy_file(cfg.copy_rows, workdir)
                    r = copy_run(s, copy_path, cfg.copy_rows)
                else:
                    r = pgbench_run(s, args, cfg.seconds, workdir)
                if m0 is not None:
                    m1 = s.metrics()
                    metrics.append({k: m1.get(k, 0) - m0.get(k, 0) for k in m1})
                runs[s.name].append(r)
        k, p = summarize(runs["kestrel"]), summarize(runs["postgres"])
        if name == "copy":
            ratio = k["seconds"] / p["seconds"] if p["seconds"] else None
        else:
            ratio = k["tps"] / p["tps"] if k["tps"] and p["tps"] else None
        commits = sum(m.get("kestrel_txn_commits_total", 0) for m in metrics)
        fsyncs = sum(m.get("kestrel_raft_log_fsyncs_total", 0) for m in metrics)
        result["workloads"].append({
            "name": name, "title": title, "kestrel": k, "postgres": p,
            "ratio": None if ratio is None else round(ratio, 4),
            "kestrel_commits_per_fsync": round(commits / fsyncs, 3) if fsyncs else None,
            "runs": runs,
        })
    return result


if __name__ == "__main__":
    main()
