#!/usr/bin/env python3
"""Helper of bench/storm.sh: the node list, the dump of what nodeboot serves, byte comparisons.

Subcommands:
  nodes    MACS-FILE -> nodes.tsv (mac, name, ip per line), by the formulas of src/synthetic.rs
  names    checks a sample of nodes.tsv against the admin endpoint /nodes/<mac> (field "name"),
           so that a change of the synthetic naming in src/ cannot silently desynchronise us
  dump     fetches, for every node, its bootscript (by MAC) and its three cloud-init documents
           (by name) from a server, and writes them where nginx serves the same URLs
  compare  fetches URLs from a server and compares each body with the dump, byte for byte;
           with --all it is the exact 400k-request storm: every (node, document) pair once,
           at a given concurrency, every status and body checked

Plain asyncio and a minimal HTTP/1.1 client (keep-alive, Content-Length bodies): no third-party
package, so the benchmark needs nothing from PyPI. Traffic goes only to the address given
(storm.sh passes 127.0.0.1).
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time
import urllib.request

CABINET_SIZE = 5000  # src/synthetic.rs CABINET_SIZE
DOCS = ("meta-data", "user-data", "vendor-data")


def node_name(i):
    """src/synthetic.rs node_name(cabinet, i) with cabinet = i / CABINET_SIZE."""
    cabinet = i // CABINET_SIZE
    return f"x{1000 + cabinet}c0s{(i % CABINET_SIZE) // 4}b0n{i % 4}"


def node_ip(i):
    """src/synthetic.rs: the node's `ip` (needed only for X-Forwarded-For with the source check on)."""
    return f"10.{100 + (i >> 16)}.{(i >> 8) & 0xff}.{i & 0xff}"


def read_nodes(path):
    with open(path, encoding="ascii") as f:
        return [tuple(line.rstrip("\n").split("\t")) for line in f if line.strip()]


def requests_for(nodes, indices, docs=("bootscript",) + DOCS):
    """(key, path, xff) for each node index and document; key is the dump file's relative path."""
    out = []
    for i in indices:
        mac, name, ip = nodes[i]
        for doc in docs:
            if doc == "bootscript":
                out.append((f"bootscript/{mac}", f"/boot/v1/bootscript?mac={mac}", None))
            else:
                out.append((f"cloud-init/{name}/{doc}", f"/cloud-init/{name}/{doc}", ip))
    return out


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection; reopened after any error."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def get(self, path, xff=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if xff:
            head += f"X-Forwarded-For: {xff}\r\n"
        self.writer.write((head + "\r\n").encode("ascii"))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise HttpError("connection closed before the status line")
        parts = status_line.split(None, 2)
        if len(parts) < 2:
            raise HttpError(f"bad status line {status_line!r}")
        status = int(parts[1])
        length, close = None, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise HttpError(f"transfer-encoding {value} not supported by this client")
            elif name == "connection" and value.lower() == "close":
                close = True
        if length is None:
            raise HttpError("response without Content-Length")
        body = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, body


async def run_requests(host, port, reqs, concurrency, handle, retries=0):
    """Sends `reqs` over `concurrency` keep-alive connections; `handle(req, status, body, err)`."""
    it = iter(reqs)

    async def worker():
        conn = Conn(host, port)
        for req in it:  # a shared iterator: each request is taken by exactly one worker
            for attempt in range(retries + 1):
                try:
                    status, body = await conn.get(req[1], req[2])
                    handle(req, status, body, None)
                    break
                except (OSError, HttpError, asyncio.IncompleteReadError, ValueError) as e:
                    await conn.close()
                    if attempt == retries:
                        handle(req, None, None, f"{type(e).__name__}: {e}")
        await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def split_hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def cmd_nodes(a):
    with open(a.macs, encoding="ascii") as f:
        macs = [line.strip() for line in f if line.strip()]
    with open(a.out, "w", encoding="ascii") as out:
        for i, mac in enumerate(macs):
            out.write(f"{mac}\t{node_name(i)}\t{node_ip(i)}\n")
    print(f"{len(macs)} nodes -> {a.out}")


def cmd_names(a):
    nodes = read_nodes(a.nodes)
    n = len(nodes)
    # First, last, cabinet boundaries and random ones: where an off-by-one would show.
    idx = {0, n - 1, min(n - 1, CABINET_SIZE - 1), min(n - 1, CABINET_SIZE)}
    idx |= set(random.Random(1).sample(range(n), min(n, a.sample)))
    bad = 0
    for i in sorted(idx):
        mac, name, _ = nodes[i]
        with urllib.request.urlopen(f"http://{a.admin}/nodes/{mac}", timeout=10) as r:
            got = json.load(r).get("name")
        if got != name:
            bad += 1
            print(f"node {i} {mac}: admin says {got!r}, bench/nbfetch.py computed {name!r}",
                  file=sys.stderr)
    if bad:
        sys.exit(f"{bad} of {len(idx)} node names differ: update node_name() in bench/nbfetch.py")
    print(f"node names: {len(idx)} sampled, all match /nodes/<mac>")


def cmd_dump(a):
    nodes = read_nodes(a.nodes)
    host, port = split_hostport(a.server)
    reqs = requests_for(nodes, range(len(nodes)))
    made_dirs = set()
    failures = []
    sizes = {}

    def handle(req, status, body, err):
        if err or status != 200:
            # nginx serving static files cannot reproduce a non-200 answer: refuse to compare.
            failures.append((req[1], status, err))
            return
        path = os.path.join(a.dir, req[0])
        d = os.path.dirname(path)
        if d not in made_dirs:
            os.makedirs(d, exist_ok=True)
            made_dirs.add(d)
        with open(path, "wb") as f:
            f.write(body)
        kind = req[0].rsplit("/", 1)[1] if req[0].startswith("cloud-init/") else "bootscript"
        sizes.setdefault(kind, []).append(len(body))

    t0 = time.monotonic()
    asyncio.run(run_requests(host, port, reqs, a.concurrency, handle, retries=2))
    dt = time.monotonic() - t0
    for path, status, err in failures[:10]:
        print(f"dump: {path}: status {status} {err or ''}", file=sys.stderr)
    if failures:
        sys.exit(f"dump: {len(failures)} of {len(reqs)} requests failed")
    summary = {k: {"count": len(v), "min": min(v), "max": max(v), "mean": round(sum(v) / len(v), 1)}
               for k, v in sorted(sizes.items())}
    print(f"dump: {len(reqs)} responses in {dt:.1f}s -> {a.dir}; body bytes {json.dumps(summary)}")


def cmd_compare(a):
    nodes = read_nodes(a.nodes)
    host, port = split_hostport(a.server)
    n = len(nodes)
    if a.all:
        indices = range(n)
    else:
        indices = sorted({0, n - 1} | set(random.Random(a.seed).sample(range(n), min(n, a.sample))))
    reqs = requests_for(nodes, indices)
    if a.shuffle:
        # Nodes do not boot in MAC order: spread consecutive requests over the whole site.
        random.Random(a.seed).shuffle(reqs)
    counts = {"requests": 0, "identical": 0, "different": 0, "non_200": 0, "socket_errors": 0}
    examples = []

    def handle(req, status, body, err):
        counts["requests"] += 1
        if err:
            counts["socket_errors"] += 1
            what = err
        elif status != 200:
            counts["non_200"] += 1
            what = f"status {status}: {body[:200]!r}"
        else:
            with open(os.path.join(a.dir, req[0]), "rb") as f:
                want = f.read()
            if body == want:
                counts["identical"] += 1
                return
            counts["different"] += 1
            what = f"body differs ({len(body)} bytes, dump has {len(want)})"
        if len(examples) < 10:
            examples.append(f"{req[1]}: {what}")

    t0 = time.monotonic()
    asyncio.run(run_requests(host, port, reqs, a.concurrency, handle))
    dt = time.monotonic() - t0
    counts.update(server=a.server, label=a.label, nodes=len(indices), concurrency=a.concurrency,
                  seconds=round(dt, 2), requests_per_second=round(counts["requests"] / dt))
    for e in examples:
        print(f"compare {a.label}: {e}", file=sys.stderr)
    print("COMPARE " + json.dumps(counts))
    if counts["identical"] != len(reqs):
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("nodes")
    s.add_argument("--macs", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_nodes)
    s = sub.add_parser("names")
    s.add_argument("--nodes", required=True)
    s.add_argument("--admin", required=True, help="HOST:PORT of nodeboot's admin listener")
    s.add_argument("--sample", type=int, default=50)
    s.set_defaults(func=cmd_names)
    s = sub.add_parser("dump")
    s.add_argument("--nodes", required=True)
    s.add_argument("--server", required=True, help="HOST:PORT")
    s.add_argument("--dir", required=True)
    s.add_argument("--concurrency", type=int, default=8)
    s.set_defaults(func=cmd_dump)
    s = sub.add_parser("compare")
    s.add_argument("--nodes", required=True)
    s.add_argument("--server", required=True, help="HOST:PORT")
    s.add_argument("--dir", required=True)
    s.add_argument("--label", default="")
    s.add_argument("--all", action="store_true", help="every node, every document, once")
    s.add_argument("--sample", type=int, default=200, help="nodes, without --all")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--shuffle", action="store_true")
    s.add_argument("--concurrency", type=int, default=8)
    s.set_defaults(func=cmd_compare)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
