#!/usr/bin/env python3
"""Markdown summary of a bench/storm.sh run: `bench/report.py RESULTS_DIR`.

Reads results.tsv (one line per wrk run), nodeboot.json (cold start, RSS), the full-storm files
in raw/, and env.txt; prints the tables docs/performance.md uses.
"""

import csv
import json
import os
import re
import sys


def ms(us):
    return f"{int(us) / 1000:.2f}"


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
    print("| scenario | connections | nodeboot req/s | nginx req/s | nodeboot/nginx "
          "| nodeboot p50 / p99 / p99.9 ms | nginx p50 / p99 / p99.9 ms "
          "| errors nodeboot / nginx | load1 after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    bench = {}
    for r in rows:
        if r["scenario"] in ("bootscript", "storm"):
            bench[(r["scenario"], int(r["connections"]), r["server"])] = r
    for scenario, conns in sorted({(s, c) for s, c, _ in bench}, key=lambda k: (k[0] != "bootscript", k[1])):
        nb, ng = bench.get((scenario, conns, "nodeboot")), bench.get((scenario, conns, "nginx"))
        if not nb or not ng:
            continue
        ratio = float(nb["rps"]) / float(ng["rps"]) if float(ng["rps"]) else float("nan")
        print(f"| {scenario} | {conns} | {float(nb['rps']):,.0f} | {float(ng['rps']):,.0f} | {ratio:.2f} "
              f"| {ms(nb['p50_us'])} / {ms(nb['p99_us'])} / {ms(nb['p999_us'])} "
              f"| {ms(ng['p50_us'])} / {ms(ng['p99_us'])} / {ms(ng['p999_us'])} "
              f"| {errors(nb)} / {errors(ng)} | {nb['load1']}, {ng['load1']} |")

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
