#!/usr/bin/env python3
"""Load on capsnet serve's POST /api/predict: CLIENTS threads, each with one
keep-alive connection, sending MNIST test digits (784 values as JSON) one
request after another for SECONDS. Prints one JSON line: requests per second,
latency percentiles (ms), the server's resident memory before, during (peak
sampled) and after, and its batching counters.

Usage: serve_load.py PORT SERVER_PID MNIST_DIR CLIENTS SECONDS
Standard library only; the client shares the machine with the server.
"""
import http.client
import json
import sys
import threading
import time

port, pid, mnist, clients, seconds = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                      int(sys.argv[4]), float(sys.argv[5]))
images = open(f"{mnist}/t10k-images-idx3-ubyte", "rb").read()
bodies = [json.dumps([v / 255 for v in images[16 + 784 * i:16 + 784 * (i + 1)]]) for i in range(100)]


def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def health():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/healthz")
    reply = json.loads(conn.getresponse().read())
    conn.close()
    return reply


latencies, errors = [], []
lock = threading.Lock()
stop_at = 0.0


def client(c):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    mine, i = [], c
    while time.perf_counter() < stop_at:
        body = bodies[i % len(bodies)]
        i += clients
        start = time.perf_counter()
        try:
            conn.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
            reply = conn.getresponse()
            reply.read()
            if reply.status != 200:
                errors.append(reply.status)
                continue
        except OSError as e:
            errors.append(repr(e))
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        mine.append(time.perf_counter() - start)
    conn.close()
    with lock:
        latencies.extend(mine)


def run(duration):
    global stop_at
    stop_at = time.perf_counter() + duration
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    peak = 0.0
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mb())
        time.sleep(0.1)
    for t in threads:
        t.join()
    return peak


rest = rss_mb()
run(min(2.0, seconds / 4))  # warm-up: first batches, allocator growth
latencies.clear()
before = health()
start = time.perf_counter()
peak = run(seconds)
elapsed = time.perf_counter() - start
after = health()
latencies.sort()
pct = lambda p: 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
batches = after["batches"] - before["batches"]
print(json.dumps({
    "clients": clients,
    "requests": len(latencies),
    "errors": len(errors),
    "requests_per_second": round(len(latencies) / elapsed, 1),
    "p50_ms": round(pct(50), 2),
    "p99_ms": round(pct(99), 2),
    "mean_batch": round((after["batched_images"] - before["batched_images"]) / max(1, batches), 2),
    "rss_rest_mb": round(rest), "rss_peak_mb": round(peak), "rss_after_mb": round(rss_mb()),
    "precision": after["precision"],
}))
