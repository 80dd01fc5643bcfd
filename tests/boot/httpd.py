#!/usr/bin/env python3
"""Tiny HTTP server for the QEMU/iPXE boot tests (stands in for nodeboot).

Serves a directory on 127.0.0.1 (QEMU slirp maps the guest's 10.0.2.2 to the
host's loopback), writes the chosen port to --port-file once listening, and
logs every request *with its query string* (iPXE's console shows only paths).

Besides static files it has one dynamic endpoint used to probe iPXE's limits:

  /loop.ipxe?mode=MODE&n=N&max=MAX[&sleep=S][&cmd=sleep|prompt]

returns an iPXE script for round N that waits S seconds and then goes to
round N+1, until N == MAX where it chains /boot.ipxe (the real boot).

With --stop-on-stdin-eof it exits when its stdin reaches end of file: a caller
that keeps the other end of a pipe open (and lets nobody else have it) takes
the server down with it however it ends, even killed.
MODE picks how the next round is reached:
  naive    chain URL                    (each script runs nested in the last)
  replace  chain --replace URL          (replaces the running script)
  imgfree  imgfree, then chain URL
  autofree chain --autofree URL
  outer    the script just `exit 1`s; the caller (an outer loop in a static
           script, see ipxe-limits.sh) waits and retries; the server counts
           rounds itself per `sid`
  http     like outer, but "not ready" is an HTTP 503 instead of a script
"""
import argparse
import http.server
import os
import socketserver
import sys
import threading
import time
import urllib.parse

COUNTERS = {}
LOCK = threading.Lock()


def loop_script(q, host):
    mode = q.get("mode", "naive")
    n = int(q.get("n", "0"))
    mx = int(q.get("max", "50"))
    sleep = q.get("sleep", "1")
    cmd = q.get("cmd", "sleep")
    wait = f"sleep {sleep}" if cmd == "sleep" else f"prompt --timeout {int(float(sleep) * 1000)} waiting || echo"
    base = f"http://{host}"
    if mode in ("outer", "http"):
        # Round number comes from the server's own per-session counter.
        key = (mode, q.get("sid", ""))
        with LOCK:
            n = COUNTERS.get(key, 0)
            COUNTERS[key] = n + 1
        if n >= mx:
            return 200, f"#!ipxe\necho nodeboot-loop {mode} ready after {n} rounds\nchain {base}/boot.ipxe\n"
        if mode == "http":
            return 503, f"not ready (round {n})\n"
        return 200, f"#!ipxe\necho nodeboot-loop {mode} round {n}\nexit 1\n"
    if n >= mx:
        nxt = f"{base}/boot.ipxe"
    else:
        # Carry every parameter (sid, sleep, ...) along; only n moves on.
        nq = dict(q, n=str(n + 1))
        nxt = f"{base}/loop.ipxe?{urllib.parse.urlencode(nq)}"
    pre = ""
    chain = "chain"
    if mode == "replace":
        chain = "chain --replace"
    elif mode == "autofree":
        chain = "chain --autofree"
    elif mode == "imgfree":
        pre = "imgfree\n"
    elif mode != "naive":
        return 400, f"unknown mode {mode}\n"
    # The echoed round number (console) and the request log (server) are the
    # evidence of how far the loop got; ${errno} says why it stopped.
    return 200, (f"#!ipxe\necho nodeboot-loop {mode} round {n}\n{wait}\n{pre}"
                 f"{chain} {nxt} || goto failed\nexit 0\n:failed\n"
                 f"echo nodeboot-loop {mode} FAILED at round {n}: ${{errno}}\nexit 1\n")


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/loop.ipxe":
            q = dict(urllib.parse.parse_qsl(url.query))
            status, body = loop_script(q, self.headers.get("Host", "10.0.2.2"))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()

    def log_message(self, fmt, *args):
        # One line per request, full path including the query string.
        sys.stderr.write("%.3f %s %s\n" % (time.time(), self.client_address[0], fmt % args))
        sys.stderr.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def exit_at_stdin_eof():
    """Blocks until stdin is closed at the other end, then ends the process."""
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--stop-on-stdin-eof", action="store_true",
                    help="exit when stdin reaches end of file (the caller is gone)")
    a = ap.parse_args()
    if a.stop_on_stdin_eof:
        threading.Thread(target=exit_at_stdin_eof, daemon=True).start()
    os.chdir(a.root)
    srv = Server((a.bind, a.port), Handler)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, a.port_file)
    sys.stderr.write(f"httpd: serving {a.root} on {a.bind}:{port}\n")
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
