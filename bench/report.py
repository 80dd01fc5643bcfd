#!/usr/bin/env python3
"""Markdown summary of a bench/storm.sh run: `bench/report.py RESULTS_DIR`.

Reads results.tsv (one line per wrk run), nodeboot.json (cold start, RSS), the full-storm files
in raw/, and env.txt; prints the tables docs/performance.md uses.
"""

import csv
import json
import os
import re
import statistics
import sys


def ms(us):
    return f"{int(us) / 1000:.2f}"


# Saturation (closed loop) first, then requests paced below saturation.
ORDER = ["bootscript", "storm", "bootscript-paced"]


def median(rs, key):
    return statistics.median(float(r[key]) for r in rs)


def lat(rs):
    return " / ".join(f"{median(rs, k) / 1000:.2f}" for k in ("p50_us", "p99_us", "p999_us"))


def errors(row):
    return sum(int(row[k]) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))


def main():
    out = sys.argv[1]
    with open(os.path.join(out, "results.tsv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    with open(os.path.join(out, "env.txt"), encoding="utf-8") as f:
        env = f.read()
    print("## Boot storm: nodeboot vs nginx on the same responses\n")
    print("```\n" + env.strip() + "\n```\n")
    print("`bootscript` and `storm`: wrk's closed loop, each connection sends its next request as "
          "soon as the answer arrives (saturation). `bootscript-paced`: each connection pauses "
          "between requests (--paced-rps), so latency is measured below saturation; its req/s is the offered load, compare latencies only.\n")
    bench = {}
    for r in rows:
        if r["scenario"] in ("bootscript", "storm", "bootscript-paced"):
            bench.setdefault((r["scenario"], int(r["connections"]), r["server"]), []).append(r)
    runs = max((len(v) for v in bench.values()), default=0)
    if runs > 1:
        print(f"Medians of {runs} runs per cell (each column's median on its own); errors are summed; "
              "the ratio is of the median req/s.\n")
    print("| scenario | connections | nodeboot req/s | nginx req/s | nodeboot/nginx "
          "| nodeboot p50 / p99 / p99.9 ms | nginx p50 / p99 / p99.9 ms "
          "| errors nodeboot / nginx | load1 after each run: nodeboot; nginx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scenario, conns in sorted({(s, c) for s, c, _ in bench}, key=lambda k: (ORDER.index(k[0]), k[1])):
        nb, ng = bench.get((scenario, conns, "nodeboot")), bench.get((scenario, conns, "nginx"))
        if not nb or not ng:
            continue
        nb_rps, ng_rps = median(nb, "rps"), median(ng, "rps")
        ratio = nb_rps / ng_rps if ng_rps else float("nan")
        print(f"| {scenario} | {conns} | {nb_rps:,.0f} | {ng_rps:,.0f} | {ratio:.2f} "
              f"| {lat(nb)} | {lat(ng)} "
              f"| {sum(map(errors, nb))} / {sum(map(errors, ng))} "
              f"| {' '.join(r['load1'] for r in nb)}; {' '.join(r['load1'] for r in ng)} |")
    if runs > 1:
        print("\nEvery run (req/s):\n")
        print("| scenario | connections | server | " + " | ".join(f"run {i + 1}" for i in range(runs)) + " |")
        print("|---|---:|---|" + "---:|" * runs)
        for (scenario, conns, server), rs in sorted(bench.items(), key=lambda kv: (ORDER.index(kv[0][0]), kv[0][1], kv[0][2])):
            print(f"| {scenario} | {conns} | {server} | " + " | ".join(f"{float(r['rps']):,.0f}" for r in rs) + " |")

    full = [r for r in rows if r["scenario"] == "storm-once"]
    exact_path = os.path.join(out, "raw", "full-storm-exact.txt")
    if full or os.path.exists(exact_path):
        print("\n## Full storm: every node's four requests\n")
        print("| client | connections | requests | errors | seconds | req/s | detail |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for r in full:
            detail = (f"connect {r['err_connect']}, read {r['err_read']}, write {r['err_write']}, "
                      f"status>399 {r['err_status']}, timeout {r['err_timeout']}; "
                      f"p99 {ms(r['p99_us'])} ms")
            print(f"| wrk, each (node, doc) pair issued once then stopped | {r['connections']} "
                  f"| {r['requests']} | {errors(r)} | {int(r['duration_us']) / 1e6:.1f} "
                  f"| {float(r['rps']):,.0f} | {detail} |")
        if os.path.exists(exact_path):
            with open(exact_path, encoding="utf-8") as f:
                text = f.read()
            m = re.search(r"^COMPARE (.*)$", text, re.M)
            if m:
                c = json.loads(m.group(1))
                bad = c["requests"] - c["identical"]
                print(f"| exact (nbfetch.py), each pair once, shuffled, bodies checked | {c['concurrency']} "
                      f"| {c['requests']} | {bad} | {c['seconds']} | {c['requests_per_second']:,} "
                      f"| identical {c['identical']}, different {c['different']}, "
                      f"non-200 {c['non_200']}, socket errors {c['socket_errors']} |")
            else:
                print(f"| exact (nbfetch.py) | | | failed | | | see {exact_path} |")
        before = os.path.join(out, "raw", "full-storm-metrics-before.txt")
        after = os.path.join(out, "raw", "full-storm-metrics-after.txt")
        if os.path.exists(before) and os.path.exists(after):
            def load(p):
                with open(p, encoding="utf-8") as f:
                    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in f if line.strip()}
            b, a = load(before), load(after)
            delta = {k: int(a[k] - b.get(k, 0)) for k in a if a[k] - b.get(k, 0)}
            print("\nnodeboot's own counters during the wrk full storm "
                  "(`nodeboot_http_requests_total` deltas; `wait` is the answer to nodes in conflict):\n")
            for k, v in sorted(delta.items()):
                print(f"- `{k}`: {v}")

    # Listen-queue overflows per run (bench/storm.sh tcp_counters): counters of the whole network
    # namespace, so anything else on the machine adds to them.
    drops = []
    raw = os.path.join(out, "raw")
    for name in sorted(os.listdir(raw)):
        if not name.endswith(".tcp"):
            continue
        with open(os.path.join(raw, name), encoding="utf-8") as f:
            lines = [dict(kv.split("=") for kv in line.split()) for line in f if line.strip()]
        if len(lines) == 2:
            d = {k: int(lines[1][k] or 0) - int(lines[0][k] or 0) for k in lines[0]}
            if any(d.values()):
                drops.append((name[:-4], d))
    if drops:
        print("\n## TCP counters that moved during a run\n")
        print("A listen-queue overflow drops a connection's handshake, which the client resends after "
              "about a second: that connection starts late. wrk starts a request's latency clock when it "
              "writes the request, once connected, so a handshake retried as a SYN (TCPSynRetrans) "
              "shows here and not in its latencies. The counters cover the whole network "
              "namespace: anything else on the machine adds to them.\n")
        print("| run | " + " | ".join(drops[0][1]) + " |")
        print("|---|" + "---:|" * len(drops[0][1]))
        for label, d in drops:
            print(f"| {label} | " + " | ".join(str(v) for v in d.values()) + " |")

    with open(os.path.join(out, "nodeboot.json"), encoding="utf-8") as f:
        nb = json.load(f)
    print("\n## Cold start and memory\n")
    print("| nodes | cold start (process start to /readyz 200) | RSS ready | RSS after wrk runs | RSS at end | peak RSS (VmHWM) |")
    print("|---:|---:|---:|---:|---:|---:|")
    mib = lambda kb: f"{kb / 1024:.0f} MiB"  # noqa: E731
    print(f"| {nb['nodes']} | {nb['cold_start_ms']} ms | {mib(nb['rss_ready_kb'])} | {mib(nb['rss_after_wrk_kb'])} "
          f"| {mib(nb['rss_end_kb'])} | {mib(nb['rss_peak_kb'])} |")


if __name__ == "__main__":
    main()
