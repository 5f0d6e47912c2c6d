#!/usr/bin/env python3
"""capsnet serve's JSON API, good and bad requests, from a client's side.

Usage: serve_client.py PORT PID MNIST_DIR PREDICT_JSON
  PREDICT_JSON: `capsnet predict --json` of the first test images (an IDX
  file of them), the independent answer the API must give.
Standard library only. Prints one line per check; exit status 1 if any failed.
"""
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time
import zlib

port, pid, mnist, predict_json = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + (f" ({detail})" if detail else ""), flush=True)
    failures += 0 if ok else 1


def request(method, path, body=None, content_type=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request(method, path, body=body, headers=headers)
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, reply.getheader("Content-Type", ""), data


def png(pixels, width, height):
    """8-bit grayscale PNG of rows of 0-255 values."""
    raw = b"".join(b"\0" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body +
                                struct.pack(">I", zlib.crc32(kind + body)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def healthy():
    status, _, data = request("GET", "/healthz")
    return status == 200 and json.loads(data)["status"] == "ok"


images = open(f"{mnist}/t10k-images-idx3-ubyte", "rb").read()
labels = open(f"{mnist}/t10k-labels-idx1-ubyte", "rb").read()
digit = lambda i: images[16 + 784 * i:16 + 784 * (i + 1)]
expected = [{"class": row["prediction"], "lengths": row["lengths"]}
            for row in json.loads(open(predict_json).read())]
n = len(expected)

# --- good requests -------------------------------------------------------
status, ctype, data = request("GET", "/healthz")
health = json.loads(data)
check("GET /healthz", status == 200 and ctype.startswith("application/json") and health["side"] == 28,
      data.decode()[:80])
status, ctype, page = request("GET", "/")
check("GET / is the page", status == 200 and ctype.startswith("text/html") and b"<canvas id=\"draw\"" in page)

worst = 0.0
same_class = True
for i in range(n):
    status, _, data = request("POST", "/api/predict", json.dumps([v / 255 for v in digit(i)]), "application/json")
    reply = json.loads(data)
    same_class &= status == 200 and reply["class"] == expected[i]["class"]
    worst = max(worst, max(abs(a - b) for a, b in zip(reply["lengths"], expected[i]["lengths"])))
check(f"POST /api/predict (784 values) equals capsnet predict on {n} test images",
      same_class and worst < 1e-5, f"largest length difference {worst:.2e}")
status, _, data = request("POST", "/api/predict", json.dumps({"pixels": [v / 255 for v in digit(0)]}), "application/json")
reply = json.loads(data)
check("{\"pixels\": [...]} works too", status == 200 and reply["class"] == expected[0]["class"])
check("the reply has 10 lengths, 10 capsules of 16, the 784-pixel input",
      len(reply["lengths"]) == 10 and len(reply["capsules"]) == 10 and
      all(len(c) == 16 for c in reply["capsules"]) and len(reply["input"]) == 784)
length0 = sum(v * v for v in reply["capsules"][reply["class"]]) ** 0.5
check("a capsule's length is its class's length", abs(length0 - reply["lengths"][reply["class"]]) < 1e-5)

# A PNG upload goes through the same preprocessing as capsnet predict of a file.
picture = png([255 - v for v in digit(0)], 28, 28)  # dark ink on white, as drawn
status, _, data = request("POST", "/api/predict", picture, "image/png")
check("POST /api/predict with a PNG", status == 200 and json.loads(data)["class"] == labels[8],
      f"status {status}")

k = reply["class"]
body = json.dumps({"capsule": k, "vector": reply["capsules"][k]})
status, _, data = request("POST", "/api/reconstruct", body, "application/json")
recon = json.loads(data)
check("POST /api/reconstruct gives 784 pixels in [0, 1]",
      status == 200 and len(recon["pixels"]) == 784 and 0 <= min(recon["pixels"]) and max(recon["pixels"]) <= 1)
status, ctype, data = request("POST", "/api/reconstruct", json.dumps({"capsule": k, "vector": reply["capsules"][k], "format": "png"}), "application/json")
check("... or a 28x28 PNG", status == 200 and ctype == "image/png" and data[:8] == b"\x89PNG\r\n\x1a\n" and
      struct.unpack(">II", data[16:24]) == (28, 28))
moved = list(reply["capsules"][k])
moved[0] += 0.25
status, _, data = request("POST", "/api/reconstruct", json.dumps({"capsule": k, "vector": moved}), "application/json")
change = max(abs(a - b) for a, b in zip(json.loads(data)["pixels"], recon["pixels"]))
check("moving one dimension by 0.25 changes the reconstruction", change > 0.01, f"largest pixel change {change:.3f}")

# --- bad requests: a 4xx with a JSON error, and the server keeps serving ----
def refused(name, status_wanted, method, path, body=None, content_type=None, words=""):
    status, ctype, data = request(method, path, body, content_type)
    try:
        error = json.loads(data)["error"]
    except Exception:
        error = None
    check(f"{name}: {status_wanted}", status == status_wanted and ctype.startswith("application/json") and
          error is not None and words in error and healthy(), f"{status} {data[:100]!r}")


refused("bad JSON", 400, "POST", "/api/predict", "{\"pixels\": [0.1,", "application/json", "not valid JSON")
refused("783 values", 400, "POST", "/api/predict", json.dumps([0.0] * 783), "application/json", "784 numbers")
refused("a pixel of 3", 400, "POST", "/api/predict", json.dumps([0.0] * 783 + [3]), "application/json", "in [0, 1]")
refused("a pixel that is a string", 400, "POST", "/api/predict", json.dumps(["a"] * 784), "application/json", "not a number")
refused("text/plain", 415, "POST", "/api/predict", "hello", "text/plain", "not accepted")
refused("no content type", 415, "POST", "/api/predict", "hello", None, "not accepted")
refused("text labelled image/png", 400, "POST", "/api/predict", "this is not a picture", "image/png", "not a PNG or JPEG")
refused("a truncated PNG", 400, "POST", "/api/predict", picture[:60], "image/png", "uploaded image")
refused("a blank picture", 400, "POST", "/api/predict", png([255] * 784, 28, 28), "image/png", "blank")
huge = png([0] * 64, 8, 8)[:16] + struct.pack(">II", 60000, 60000) + png([0] * 64, 8, 8)[24:]
refused("a PNG claiming 60000x60000 pixels", 400, "POST", "/api/predict", huge, "image/png", "")
refused("an empty body", 400, "POST", "/api/predict", b"", "image/png", "empty")
refused("5 MiB", 413, "POST", "/api/predict", b"\x89PNG" + b"\0" * (5 << 20), "image/png", "too large")
refused("capsule 10", 422, "POST", "/api/reconstruct", json.dumps({"capsule": 10, "vector": [0] * 16}), "application/json", "capsules 0 to 9")
refused("capsule -1", 422, "POST", "/api/reconstruct", json.dumps({"capsule": -1, "vector": [0] * 16}), "application/json", "capsules 0 to 9")
refused("capsule 1.5", 400, "POST", "/api/reconstruct", json.dumps({"capsule": 1.5, "vector": [0] * 16}), "application/json", "integer")
refused("15 components", 422, "POST", "/api/reconstruct", json.dumps({"capsule": 1, "vector": [0] * 15}), "application/json", "16 numbers")
refused("a component of 1e300", 422, "POST", "/api/reconstruct", json.dumps({"capsule": 1, "vector": [0] * 15 + [1e300]}), "application/json", "within")
refused("no vector", 400, "POST", "/api/reconstruct", json.dumps({"capsule": 1}), "application/json", "expected")
refused("format bmp", 400, "POST", "/api/reconstruct", json.dumps({"capsule": 1, "vector": [0] * 16, "format": "bmp"}), "application/json", "format")
refused("reconstruct as text", 415, "POST", "/api/reconstruct", "capsule=1", "application/x-www-form-urlencoded", "not accepted")
refused("an unknown path", 404, "GET", "/api/nothing", None, None, "no such page")
refused("GET on a POST route", 404, "GET", "/api/predict", None, None, "")

# A client that sends half a request and stalls is cut off by the read
# timeout (--timeout), and others are answered meanwhile.
stalled = socket.create_connection(("127.0.0.1", port))
stalled.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n[0.1,")
start = time.time()
check("answered while a client stalls", healthy())
stalled.settimeout(30)
try:
    closed = stalled.recv(4096) is not None
except OSError:
    closed = True
waited = time.time() - start
check("the stalled connection is closed by the timeout", closed and waited < 20, f"after {waited:.1f} s")
stalled.close()
# Garbage instead of HTTP.
junk = socket.create_connection(("127.0.0.1", port))
junk.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
junk.settimeout(10)
try:
    junk.recv(4096)
except OSError:
    pass
junk.close()
check("garbage instead of HTTP: still serving", healthy())

# --- 200 concurrent requests from 20 clients -------------------------------
def load_round(clients=20, each=10):
    answers, errors = {}, []

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for r in range(each):
            i = (c * each + r) % n
            try:
                conn.request("POST", "/api/predict", json.dumps([v / 255 for v in digit(i)]),
                             {"Content-Type": "application/json"})
                reply = conn.getresponse()
                body = json.loads(reply.read())
                answers[(c, r)] = (i, reply.status, body.get("class"), body.get("lengths"))
            except Exception as e:  # noqa: BLE001 -- counted as a failure
                errors.append(repr(e))
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers, errors, time.time() - start


rss_rest = rss_mb()
answers, errors, seconds = load_round()
right = sum(1 for i, status, klass, lengths in answers.values()
            if status == 200 and klass == expected[i]["class"] and
            max(abs(a - b) for a, b in zip(lengths, expected[i]["lengths"])) < 1e-4)
check("200 concurrent requests from 20 clients all answered correctly", right == 200 and not errors,
      f"{right} right, {len(errors)} errors, {seconds:.1f} s")
health = json.loads(request("GET", "/healthz")[2])
check("concurrent requests were batched", health["largest_batch"] > 1,
      f"{health['batches']} batches for {health['batched_images']} images, largest {health['largest_batch']}")
rss_first = rss_mb()
for _ in range(3):
    load_round()
rss_after = rss_mb()
check("memory is flat after 600 more requests", rss_after - rss_first < 16,
      f"RSS {rss_rest:.0f} MB at rest, {rss_first:.0f} after 200, {rss_after:.0f} after 800")

print(f"serve api: {failures} failed")
sys.exit(1 if failures else 0)
