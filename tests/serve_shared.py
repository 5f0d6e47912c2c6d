#!/usr/bin/env python3
"""capsnet serve shared beyond this machine, from clients (standard library only).

  serve_shared.py access   URL PID MNIST PREDICT_JSON TOKEN CERT ACCESS_LOG
      tokens (401 for missing, wrong and malformed ones; /healthz open),
      HTTPS with the server's certificate, /metrics parsed and checked against
      the requests sent, and the access log's lines.
  serve_shared.py stall    URL PID MNIST PREDICT_JSON
      256 connections stalled mid-head and mid-body by an attacker that
      reconnects as soon as it is dropped (run the server with --timeout 2,
      so that it is, during the test); a well-behaved client (another
      address) gets /healthz and /api/predict within 1 s; memory stays bounded;
      one address's 65th connection is refused (--max-client-connections 64).
  serve_shared.py overload URL PID MNIST PREDICT_JSON
      bursts beyond --max-queue: 503s with Retry-After, and every accepted
      request gets its own, right answer.
"""
import http.client
import json
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse

failures = 0


def check(what, ok, detail=""):
    global failures
    print(("ok    " if ok else "FAIL  ") + what + ("" if ok else f"  ({detail})"))
    if not ok:
        failures += 1


def test_digits(mnist, n):
    with open(mnist + "/t10k-images-idx3-ubyte", "rb") as f:
        data = f.read(16 + n * 784)[16:]
    return [[b / 255 for b in data[i * 784:(i + 1) * 784]] for i in range(n)]


class Client:
    def __init__(self, url, token=None, cafile=None, source=None):
        parts = urllib.parse.urlsplit(url)
        self.https, self.host, self.port = parts.scheme == "https", parts.hostname, parts.port
        self.token, self.source = token, source
        self.context = ssl.create_default_context(cafile=cafile) if self.https else None

    def request(self, method, path, body=None, content_type=None, headers=None, token=True):
        h = dict(headers or {})
        if content_type:
            h["Content-Type"] = content_type
        if token and self.token:
            h["Authorization"] = "Bearer " + self.token
        source = (self.source, 0) if self.source else None
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.context,
                                               source_address=source)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30, source_address=source)
        start = time.monotonic()
        conn.request(method, path, body=body, headers=h)
        reply = conn.getresponse()
        data = reply.read()
        seconds = time.monotonic() - start
        conn.close()
        return reply.status, dict(reply.getheaders()), data, seconds

    def predict(self, pixels, **kw):
        return self.request("POST", "/api/predict", json.dumps(pixels), "application/json", **kw)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def parse_metrics(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}; every line checked."""
    samples, bad = {}, []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = line_re.match(line)
        if not m:
            bad.append(line)
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(3) or ""))
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples, bad


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def access(url, pid, mnist, predict_json, token, cert, access_log):
    expected = json.load(open(predict_json))
    digits = test_digits(mnist, 5)
    client = Client(url, token=token, cafile=cert)
    # Unauthorized: no header, a wrong token (same length and not), other schemes, junk.
    refusals = [None, "Bearer " + token[:-1] + ("0" if token[-1] != "0" else "1"), "Bearer wrong",
                "Basic " + token, "Bearer", "Bearer " + token + " extra", token]
    for header in refusals:
        headers = {"Authorization": header} if header is not None else {}
        status, h, body, _ = client.request("POST", "/api/predict", json.dumps(digits[0]),
                                            "application/json", headers=headers, token=False)
        check(f"401 for Authorization {header!r:.40}", status == 401 and
              json.loads(body) == {"error": "unauthorized", "status": 401} and
              h.get("WWW-Authenticate") == "Bearer", (status, body[:80]))
    status, _, _, _ = client.request("GET", "/metrics", token=False)
    check("/metrics needs the token too", status == 401, status)
    status, _, body, _ = client.request("GET", "/healthz", token=False)
    check("/healthz answers without it (HTTPS)", status == 200 and json.loads(body)["classes"] == 10,
          status)
    for i, pixels in enumerate(digits):
        status, _, body, _ = client.predict(pixels)
        check(f"predict digit {i} with the token over HTTPS", status == 200 and
              json.loads(body)["class"] == expected[i]["prediction"], (status, body[:80]))
    bad = [("[1, 2]", "application/json"), ("{", "application/json"), ("x", "text/plain")]
    for body, kind in bad:
        status, _, _, _ = client.request("POST", "/api/predict", body, kind)
        check(f"a bad body ({kind}) is refused", status in (400, 415), status)
    client.request("GET", "/healthz")
    # The plain-HTTP port does not exist: the TLS port refuses plain HTTP.
    try:
        plain = http.client.HTTPConnection(client.host, client.port, timeout=5)
        plain.request("GET", "/healthz")
        answered = plain.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        answered = False
    check("plain HTTP to the TLS port gets no answer", not answered)

    status, h, text, _ = client.request("GET", "/metrics")
    check("/metrics with the token", status == 200 and h["Content-Type"].startswith("text/plain"), status)
    samples, bad_lines = parse_metrics(text.decode())
    check("every /metrics line parses", not bad_lines, bad_lines[:3])
    req = "capsnet_serve_requests_total"
    counts = {(s, p): metric(samples, req, path=p, status=s) for p in ("/api/predict",)
              for s in ("200", "400", "401", "415")}
    check("requests_total counts the answered requests", counts[("200", "/api/predict")] == 5 and
          counts[("400", "/api/predict")] == 2 and counts[("401", "/api/predict")] == len(refusals) and
          counts[("415", "/api/predict")] == 1, counts)
    check("and the health checks", metric(samples, req, path="/healthz", status="200") == 2)
    check("and the refused /metrics", metric(samples, req, path="/metrics", status="401") == 1)
    lat = "capsnet_serve_request_duration_seconds"
    n = metric(samples, lat + "_count", path="/api/predict")
    check("the latency histogram counts every predict", n == 5 + 3 + len(refusals), n)
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == lat + "_bucket" and dict(k[1]).get("path") == "/api/predict")
    check("its buckets are cumulative up to +Inf = count",
          all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])) and buckets[-1] == (float("inf"), n))
    batches = metric(samples, "capsnet_serve_batch_size_count")
    images = metric(samples, "capsnet_serve_batch_size_sum")
    check("the batch-size histogram holds the 5 classified images", images == 5 and 1 <= batches <= 5,
          (batches, images))
    check("inference times, one per batch", metric(samples, "capsnet_serve_inference_seconds_count") == batches)
    check("refusals by reason", metric(samples, "capsnet_serve_refused_total", reason="unauthorized")
          == len(refusals) + 1)
    check("queue depth 0 at rest", metric(samples, "capsnet_serve_queue_depth") == 0)
    check("open connections counted", (metric(samples, "capsnet_serve_connections") or 0) >= 1)
    rss = metric(samples, "process_resident_memory_bytes")
    check("resident memory as /proc says", rss and abs(rss / 1024 - rss_kib(pid)) < 64 * 1024, rss)

    with open(access_log) as f:
        lines = f.read().splitlines()
    # "- -": a connection whose request could not be read (e.g. plain HTTP on the TLS port).
    line_re = re.compile(r"^(?:127\.0\.0\.1 (GET|POST)|- -) (\S+) (\d{3}) \d+\.\d ms batch (\d+)$")
    parsed = [line_re.match(line) for line in lines]
    check("every access-log line is 'client method path status ms batch'", all(parsed),
          [l for l, p in zip(lines, parsed) if not p][:2])
    ok_predicts = [p for p in parsed if p and p.group(2) == "/api/predict" and p.group(3) == "200"]
    check("5 answered predicts logged with their batch", len(ok_predicts) == 5 and
          all(int(p.group(4)) >= 1 for p in ok_predicts), len(ok_predicts))
    check("the 401s logged", sum(1 for p in parsed if p and p.group(3) == "401") == len(refusals) + 1)


def stall(url, pid, mnist, predict_json):
    expected = json.load(open(predict_json))
    digit = test_digits(mnist, 1)[0]
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port
    before = rss_kib(pid)
    head = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n")

    def attack(k):
        s = socket.socket()
        s.bind((f"127.0.0.{10 + k % 8}", 0))  # 8 attacking addresses, 32 connections each
        s.settimeout(5)
        s.connect((host, port))
        # Half stall in the head (no blank line), half in the body (1,000 of 100,000 bytes).
        s.sendall(head if k % 2 == 0 else head + b"\r\n" + b"[" + b"0," * 500)
        return s

    sockets = [attack(k) for k in range(256)]
    stop = threading.Event()
    reconnects = [0]

    def sustain():  # reconnect every stalled connection the server drops
        while not stop.is_set():
            readable, _, _ = select.select(sockets, [], [], 0.2)
            for s in readable:
                k = sockets.index(s)
                try:
                    closed = s.recv(65536) == b""
                except OSError:
                    closed = True
                if closed:
                    s.close()
                    try:
                        sockets[k] = attack(k)
                        reconnects[0] += 1
                    except OSError:
                        pass

    attacker = threading.Thread(target=sustain)
    attacker.start()
    try:
        time.sleep(1.0)
        good = Client(url, source="127.0.0.2")
        slowest = 0.0
        for _ in range(12):  # over about 4 s: the server drops stalled connections
            time.sleep(0.3)  # after its --timeout, and the attacker comes back
            status, _, body, seconds = good.request("GET", "/healthz")
            slowest = max(slowest, seconds)
            ok = status == 200
            status, _, body, seconds = good.predict(digit)
            slowest = max(slowest, seconds)
            ok = ok and status == 200 and json.loads(body)["class"] == expected[0]["prediction"]
            if not ok:
                break
        check("with 256 stalled connections, /healthz and /api/predict answer", ok, status)
        check(f"within 1 s each (slowest {slowest * 1000:.0f} ms)", slowest < 1.0, slowest)
        status, _, text, _ = good.request("GET", "/metrics")
        samples, _ = parse_metrics(text.decode())
        held = metric(samples, "capsnet_serve_connections")
        check(f"the stalled connections are held open ({held:.0f})", held >= 200, held)
        during = rss_kib(pid)
        check(f"memory stays bounded: {before // 1024} MiB before, {during // 1024} MiB with 256 stalled",
              during - before < 256 * 1024, during - before)
    finally:
        stop.set()
        attacker.join()
        for s in sockets:
            s.close()
    check(f"the attacker was dropped and reconnected ({reconnects[0]} times)", reconnects[0] >= 128)

    # One address, 70 kept-alive connections: the 65th on are refused at their
    # first request (--max-client-connections 64), another address is not.
    held, statuses = [], []
    for _ in range(70):
        conn = http.client.HTTPConnection(host, port, timeout=10, source_address=("127.0.0.3", 0))
        conn.request("GET", "/healthz")
        reply = conn.getresponse()
        reply.read()
        statuses.append((reply.status, reply.getheader("Retry-After")))
        held.append(conn)
    check("64 connections of one address answered, then 503 with Retry-After",
          statuses[:64] == [(200, None)] * 64 and statuses[64:] == [(503, "1")] * 6, statuses[60:])
    status, _, _, _ = Client(url, source="127.0.0.4").request("GET", "/healthz")
    check("while another address is answered", status == 200, status)
    for conn in held:
        conn.close()


def overload(url, pid, mnist, predict_json):
    expected = json.load(open(predict_json))
    digits = test_digits(mnist, 40)
    parts = urllib.parse.urlsplit(url)
    statuses, answers = [], {}
    for burst in range(5):
        conns = []
        for i in range(40):  # 40 requests written before any answer is read
            s = socket.create_connection((parts.hostname, parts.port), timeout=30)
            body = json.dumps(digits[i]).encode()
            s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            conns.append(s)
        for i, s in enumerate(conns):
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            head, _, payload = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            statuses.append(status)
            if status == 200:
                answers.setdefault(i, []).append(json.loads(payload))
            elif status == 503:
                ok = b"Retry-After: 1" in head and json.loads(payload)["status"] == 503
                check("a 503 says Retry-After and why", ok, head[:200])
        if 503 in statuses:
            break
    check(f"bursts beyond --max-queue get 503s ({statuses.count(503)} of {len(statuses)})",
          503 in statuses and 200 in statuses)
    check("only 200s and 503s", set(statuses) <= {200, 503}, set(statuses))
    wrong = [i for i, replies in answers.items() for r in replies
             if r["class"] != expected[i]["prediction"] or
             max(abs(a - b) for a, b in zip(r["lengths"], expected[i]["lengths"])) > 1e-4]
    check(f"every accepted request got its own answer ({sum(map(len, answers.values()))} checked)",
          not wrong, wrong[:5])


def main():
    mode, url, pid, mnist, predict_json, *rest = sys.argv[1:]
    {"access": access, "stall": stall, "overload": overload}[mode](url, int(pid), mnist, predict_json, *rest)
    print(f"serve_shared {mode}: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
