"""Multi-node benchmark: three nodes sharing one redis-server against one memory-engine node.

    .venv/bin/python bench/nodes.py            # N = 300, 2 rounds; about 1-2 minutes
    .venv/bin/python bench/nodes.py --quick    # fewer messages, 1 round; ~20 s
    .venv/bin/python bench/nodes.py --only 3 --subscribers 600 --messages 500

Needs the `bench` extra and Debian's `redis-server` on PATH. Run by hand, on a quiet
machine; not part of the tests. Reuses bench/fanout.py (servers, client worker
processes, the saturated and light phases); see its docstring for the method.

Two setups, measured in the same run, alternating for --rounds rounds (before each, up to
--wait-quiet seconds of waiting for an idle machine):

* **1 node**: one `nyo-realtime serve` on the memory engine (SQLite history, temp --db).
* **3 nodes**: three `nyo-realtime serve --redis redis://...` and one redis-server started
  here (temp dir, `--save '' --appendonly no`), stopped at the end.
* **3 nodes, 3 shards** (`--cluster`, which runs it against "3 nodes"): the same three
  nodes on `redis+cluster://` of three masters made here (no replicas); redis CPU is the
  three servers' sum. One channel lives on one shard, so this measures what the cluster's
  path costs (sharded pub/sub, KEYS routing), not how load spreads over shards.

N subscribers on one channel, in SUB_PROCS client processes; with 3 nodes, client process
i connects its subscribers to node i, so they are spread evenly. The publisher is
connected to node 1: with 3 nodes, 2/3 of the deliveries cross nodes through Redis (node 1
too delivers what Redis's pub/sub sends it, so every delivery takes the Redis hop).
Saturated phase: at most 32 unacked publishes; light phase: paced at ~2000 deliveries/s
in total, for the publish->receive latency (the payload carries time.time() of the send;
one machine, so the clocks agree). CPU is read from /proc/<pid>/stat (utime + stime)
before and after each phase, per server process and for redis-server separately. Rows:
every round; ratios 3 nodes / 1 node: of the round of each setup with the least CPU used
by other processes on the machine ('other').
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import (  # noqa: E402 - bench/ is not a package
    LIGHT_DELIVERIES,
    WINDOW,
    Scenario,
    Server,
    cpu_seconds,
    fmt_ms,
    fmt_rate,
    free_port,
    machine_busy_seconds,
    percentile,
    worker,
)

SUB_PROCS = 3  # subscriber processes (one per node in the 3-node setup)
WARMUP = 20  # untimed messages before the measured phases
QUIET = 0.15  # machine busy below this share of all cores counts as quiet


def wait_quiet(budget: float) -> float:
    """Wait up to `budget` s for a 1 s window in which the machine is nearly idle."""
    begin = time.time()
    while time.time() - begin < budget:
        busy0 = machine_busy_seconds()
        time.sleep(1)
        if machine_busy_seconds() - busy0 < QUIET * (os.cpu_count() or 1):
            break
    return time.time() - begin


class Tap:
    """A worker's pipe that keeps the last answer, so each process's latencies can be read."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.last: tuple = ()

    def send(self, item: Any) -> None:
        self.conn.send(item)

    def recv(self) -> Any:
        self.last = self.conn.recv()
        return self.last


class RedisServer:
    """A redis-server without persistence in `tmp`; with `pinned`, the `taskset -c`
    cores it runs on (compare.py keeps it on the servers' core)."""

    def __init__(self, tmp: Path, pinned: str | None = None, cluster: bool = False) -> None:
        if not shutil.which("redis-server"):
            raise SystemExit("bench: redis-server is not on PATH (apt-get install redis-server)")
        self.port = free_port()
        while cluster and self.port > 55535:  # its cluster bus port is 10000 above
            self.port = free_port()
        mode = ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = open(tmp / f"redis-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        taskset = ["taskset", "-c", pinned] if pinned else []
        self.process = subprocess.Popen(
            [*taskset, "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(tmp),
             *(mode if cluster else [])],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {Path(self.log.name).read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class RedisClusterServers:
    """Three redis-server masters (`--cluster-enabled yes`, no replicas, no persistence)
    joined by `redis-cli --cluster create`: `--cluster`'s "3 shards" setup."""

    def __init__(self, tmp: Path, masters: int = 3) -> None:
        if not shutil.which("redis-cli"):
            raise SystemExit("bench: redis-cli is not on PATH (apt-get install redis-tools)")
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(masters):
                self.nodes.append(RedisServer(tmp, cluster=True))
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not all(
                "cluster_state:ok"
                in subprocess.run(
                    ["redis-cli", "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                ).stdout  # fmt: skip
                for n in self.nodes
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Cluster(Scenario):
    """fanout.Scenario with subscriber process i connected to node i % len(servers)."""

    def __init__(
        self, servers: list[Server], redis: RedisServer | RedisClusterServers | None, n: int
    ) -> None:
        self.server, self.servers, self.redis, self.n = servers[0], servers, redis, n
        ctx = mp.get_context("spawn")
        shares = [n // SUB_PROCS + (1 if i < n % SUB_PROCS else 0) for i in range(SUB_PROCS)]
        self.shares = [size for size in shares if size]
        plan = [("pub", 1, servers[0].url)] + [
            ("sub", size, servers[i % len(servers)].url) for i, size in enumerate(self.shares)
        ]
        self.workers: list[tuple[Any, Any]] = []
        first = 1
        for role, size, url in plan:
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=worker, args=(role, "ours", url, size, first, child), daemon=True
            )
            p.start()
            first += size
            self.workers.append((p, parent))
        self.pub = self.workers[0][1]
        self.subs = [Tap(c) for _, c in self.workers[1:]]
        for _, c in self.workers:
            if not c.poll(120):
                raise RuntimeError("a client process did not connect in 120 s")
            c.recv()

    def measure(self, phase: str, count: int, rate: float | None) -> dict:
        servers = [s.pid for s in self.servers]
        clients = [p.pid for p, _ in self.workers]
        extra = self.redis.pids if self.redis else []  # every shard's redis-server
        pids = servers + extra + clients
        cpu0 = [cpu_seconds(pid) for pid in pids]
        busy0, t0 = machine_busy_seconds(), time.time()
        r = self.run(phase, count, WINDOW, rate)
        wall = time.time() - t0
        used = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
        k = len(servers)
        per = max(r["deliveries"], 1) / 1e6  # -> microseconds per delivery
        r["node_cpu"] = [u / wall * 100 for u in used[:k]]
        r["srv_us"] = sum(used[:k]) / per
        r["redis_us"] = sum(used[k : k + len(extra)]) / per if extra else math.nan
        r["redis_cpu"] = sum(used[k : k + len(extra)]) / wall * 100 if extra else math.nan
        r["client_us"] = sum(used[k + len(extra) :]) / per
        r["other_cpu"] = max(0.0, machine_busy_seconds() - busy0 - sum(used)) / wall * 100
        # Subscriber process 0 is on node 1 with the publisher; the others on nodes 2, 3.
        lat = [sorted(array("d", t.last[3])) for t in self.subs]
        r["p50_local"] = percentile(lat[0], 0.5) * 1000
        r["p50_remote"] = percentile(sorted(x for v in lat[1:] for x in v), 0.5) * 1000
        if r["deliveries"] != r["expected"] or r["acked"] != r["sent"]:
            print(f"\n  {len(self.servers)} node(s), {phase}: sent {r['sent']}, acked {r['acked']}, "
                  f"deliveries per subscriber process {[t.last[0] for t in self.subs]}, "
                  f"expected {[r['sent'] * size for size in self.shares]}",
                  file=sys.stderr)  # fmt: skip
        return r


def bench(setup: str, n: int, tmp: Path, sat_messages: int, light_seconds: float) -> dict:
    redis: RedisServer | RedisClusterServers | None = None
    if setup == "3 nodes":
        redis = RedisServer(tmp)
    elif setup == CLUSTER_SETUP:
        redis = RedisClusterServers(tmp)
    servers: list[Server] = []
    try:
        for _ in range(3 if redis else 1):
            servers.append(Server("ours", tmp, extra_args=("--redis", redis.url) if redis else ()))
        cluster = Cluster(servers, redis, n)
        try:
            cluster.measure("warmup", WARMUP, None)
            sat = cluster.measure("sat", sat_messages, None)
            rate = max(2.0, LIGHT_DELIVERIES / n)
            light = cluster.measure("light", max(10, int(rate * light_seconds)), rate)
            return {"setup": setup, "n": n, "sat": sat, "light": light}
        finally:
            cluster.close()
    finally:
        for s in servers:
            s.stop()
        if redis:
            redis.stop()


CLUSTER_SETUP = "3 nodes, 3 shards"


def fmt_us(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f}"


def quietest(results: list[dict], setup: str) -> dict:
    """The round of `setup` that shared the machine least with other work."""
    return min(
        (r for r in results if r["setup"] == setup),
        key=lambda r: r["sat"]["other_cpu"] + r["light"]["other_cpu"],
    )


def report(results: list[dict], total: float, command: str, waited: float) -> None:
    print()
    print(f"`{command}` — {os.cpu_count()} CPU cores, loopback, python {sys.version.split()[0]}, "
          f"N = {results[0]['n']} subscribers, {results[0]['sat']['sent']} saturated messages")  # fmt: skip
    print()
    print("| setup | deliv/s (sat) | pub msg/s | server CPU µs/deliv | redis CPU µs/deliv "
          "| client CPU µs/deliv | node CPU % (sat) | redis CPU % | light p50 ms | light p99 ms "
          "| p50 node 1 / others | lost | other CPU % |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        s, lt = r["sat"], r["light"]
        lost = s["expected"] - s["deliveries"] + lt["expected"] - lt["deliveries"]
        nodes = " / ".join(f"{c:.0f}" for c in s["node_cpu"])
        redis_cpu = "-" if math.isnan(s["redis_cpu"]) else f"{s['redis_cpu']:.0f}"
        split = "-" if len(s["node_cpu"]) == 1 else (
            f"{fmt_ms(lt['p50_local'])} / {fmt_ms(lt['p50_remote'])}")  # fmt: skip
        print(f"| {r['setup']} #{r['round']} | {fmt_rate(s['deliveries_s'])} "
              f"| {fmt_rate(s['publish_s'])} | {fmt_us(s['srv_us'])} | {fmt_us(s['redis_us'])} "
              f"| {fmt_us(s['client_us'])} | {nodes} | {redis_cpu} | {fmt_ms(lt['p50'])} "
              f"| {fmt_ms(lt['p99'])} | {split} | {lost} "
              f"| {s['other_cpu']:.0f} / {lt['other_cpu']:.0f} |")  # fmt: skip
    setups = {r["setup"] for r in results}
    if setups == {"1 node", "3 nodes"}:
        three, one = quietest(results, "3 nodes"), quietest(results, "1 node")

        def ratio(phase: str, key: str, with_redis: bool = False) -> str:
            a, b = three[phase][key], one[phase][key]
            if with_redis:
                a += three[phase]["redis_us"]
            return "-" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}x"

        print()
        print(f"| 3 nodes #{three['round']} / 1 node #{one['round']} | deliv/s | server µs/deliv "
              "| server+redis µs/deliv | client µs/deliv | light p50 | light p99 |")  # fmt: skip
        print("|---|--:|--:|--:|--:|--:|--:|")
        print(f"| ratio | {ratio('sat', 'deliveries_s')} | {ratio('sat', 'srv_us')} "
              f"| {ratio('sat', 'srv_us', True)} | {ratio('sat', 'client_us')} "
              f"| {ratio('light', 'p50')} | {ratio('light', 'p99')} |")  # fmt: skip
    print()
    print("µs/deliv = CPU seconds (utime+stime) in the saturated phase / deliveries; server = all")
    print(
        "nodes summed; node CPU % = per node (node 1 has the publisher), 100 = one core; client ="
    )
    print(
        f"publisher + subscriber processes. Light phase paced at ~{LIGHT_DELIVERIES} deliveries/s;"
    )
    print(
        "'p50 node 1 / others' = light p50 of the subscribers on the publisher's node / on nodes 2-3."
    )
    print(
        "'other' = machine CPU outside these processes, saturated / light phase (should be near 0);"
    )
    print("'lost' should be 0.")
    noisy = [r for r in results if max(r["sat"]["other_cpu"], r["light"]["other_cpu"]) > 10]
    if noisy:
        print(f"WARNING: {len(noisy)} of {len(results)} runs shared the machine with other work "
              "(see 'other'); their throughput and latency are low.")  # fmt: skip
    if len(results) > 2:
        print("Ratios: of the round of each setup with the least 'other' CPU.")
    print(f"total run time {total:.0f} s ({waited:.0f} s of it waiting for a quiet machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, one round")
    parser.add_argument("--subscribers", type=int, default=300, help="N, default 300")
    parser.add_argument("--messages", type=int, help="saturated messages (default 1000, quick 200)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 2, quick 1)")
    parser.add_argument("--only", choices=["1", "3"], help="one setup only: 1 node or 3 nodes")
    parser.add_argument("--cluster", action="store_true",
                        help="3 nodes on one redis-server against 3 nodes on a 3-master Redis "
                        "Cluster (sharded pub/sub), in the same run")  # fmt: skip
    parser.add_argument("--wait-quiet", type=float, default=15.0, metavar="S",
                        help="before each setup, wait up to S s for an idle machine (default 15)")  # fmt: skip
    args = parser.parse_args()
    sat = args.messages or (200 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 2)
    light_seconds = 2.0 if args.quick else 5.0
    setups = {"1": ["1 node"], "3": ["3 nodes"]}.get(args.only or "", ["1 node", "3 nodes"])
    if args.cluster:
        setups = ["3 nodes", CLUSTER_SETUP]
    begin, waited, results = time.time(), 0.0, []
    with tempfile.TemporaryDirectory(prefix="nyo-nodes-") as tmp:
        for round_ in range(1, rounds + 1):
            for setup in setups:
                print(f"  {setup} #{round_} ...", end="", flush=True, file=sys.stderr)
                waited += wait_quiet(args.wait_quiet)
                t = time.time()
                result = bench(setup, args.subscribers, Path(tmp), sat, light_seconds)
                results.append({**result, "round": round_})
                print(f" {time.time() - t:.1f} s", file=sys.stderr, flush=True)
    command = " ".join([".venv/bin/python", "bench/nodes.py", *sys.argv[1:]])
    report(results, time.time() - begin, command, waited)


if __name__ == "__main__":
    main()
