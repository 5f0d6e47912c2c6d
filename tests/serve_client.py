#!/usr/bin/env python3
"""capsnet serve's JSON API, good and bad requests, from a client's side.

Usage: serve_client.py PORT PID MNIST_DIR PREDICT_JSON
       serve_client.py --colour PORT FOLDER
  PREDICT_JSON: `capsnet predict --json` of the first test images (an IDX
  file of them), the independent answer the API must give.
  --colour: the server runs a colour model trained on FOLDER (CLASS/*.png,
  one class red, one green, one blue): class names, pictures and 3-channel
  pixels in, colour out.
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

port = int(sys.argv[2] if sys.argv[1] == "--colour" else sys.argv[1])
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


def png(pixels, width, height, channels=1):
    """8-bit PNG, grey or RGB, of rows of 0-255 values (RGB interleaved)."""
    row = width * channels
    raw = b"".join(b"\0" + bytes(pixels[y * row:(y + 1) * row]) for y in range(height))
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body +
                                struct.pack(">I", zlib.crc32(kind + body)))
    colour_type = 2 if channels == 3 else 0
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(pixels, width, height, channels=1):
    """24-bit BMP of the same rows as png(): bottom-up, BGR, rows padded to 4 bytes."""
    rgb = lambda i: [pixels[i * channels + (c if channels == 3 else 0)] for c in range(3)]
    pad = (4 - 3 * width % 4) % 4
    rows = b"".join(bytes(v for x in range(width) for v in reversed(rgb(y * width + x))) + b"\0" * pad
                    for y in reversed(range(height)))
    return (b"BM" + struct.pack("<IHHI", 54 + len(rows), 0, 0, 54) +
            struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(rows), 2835, 2835, 0, 0) + rows)


def healthy():
    status, _, data = request("GET", "/healthz")
    return status == 200 and json.loads(data)["status"] == "ok"


def refused(name, status_wanted, method, path, body=None, content_type=None, words=""):
    """A 4xx with a JSON error containing `words`, and the server keeps serving."""
    status, ctype, data = request(method, path, body, content_type)
    try:
        error = json.loads(data)["error"]
    except Exception:
        error = None
    check(f"{name}: {status_wanted}", status == status_wanted and ctype.startswith("application/json") and
          error is not None and words in error and healthy(), f"{status} {data[:100]!r}")


def colour_model(folder):
    """The API of a 3-channel model with named classes."""
    status, _, data = request("GET", "/healthz")
    health = json.loads(data)
    classes = sorted(os.listdir(folder))
    check("GET /healthz names the folder's classes", status == 200 and health["class_names"] == classes,
          f"{health.get('class_names')} for folders {classes}")
    side = health["image_size"]
    check("... and says 3 channels", health["channels"] == 3 and health["classes"] == len(classes),
          f"{health['channels']} channels, {side}x{side}")
    count = 3 * side * side
    replies = {}
    for name in classes:
        path = os.path.join(folder, name, sorted(os.listdir(os.path.join(folder, name)))[0])
        status, _, data = request("POST", "/api/predict", open(path, "rb").read(), "image/png")
        reply = json.loads(data)
        replies[name] = reply
        check(f"a {name} picture as image/png: a class and its name",
              status == 200 and reply["class_name"] == health["class_names"][reply["class"]] and
              reply["channels"] == 3 and len(reply["input"]) == count and len(reply["lengths"]) == 3,
              f"status {status}, {reply.get('class_name')!r}")
    # The folders' pictures are mostly red, green and blue in class order: the
    # input the network saw keeps the colour (not grey).
    for c, name in enumerate(classes):
        plane = side * side
        means = [sum(replies[name]["input"][k * plane:(k + 1) * plane]) / plane for k in range(3)]
        check(f"the {name} picture reaches the network in colour (channel {c} brightest)",
              max(range(3), key=lambda k: means[k]) == c and max(means) - min(means) > 0.3,
              "channel means " + ", ".join(f"{m:.2f}" for m in means))
    reply = replies[classes[0]]
    status, _, data = request("POST", "/api/predict", json.dumps(reply["input"]), "application/json")
    again = json.loads(data)
    check(f"the input sent back as {count} JSON values gives the same answer",
          status == 200 and again["class"] == reply["class"] and
          max(abs(a - b) for a, b in zip(again["lengths"], reply["lengths"])) < 1e-5)
    # A BMP of a red picture of the model's own size: used as it is.
    red = [v for _ in range(side * side) for v in (230, 20, 10)]
    status, _, data = request("POST", "/api/predict", bmp(red, side, side, 3), "image/bmp")
    seen = json.loads(data).get("input", [])
    check("a BMP upload: its pixels, channel after channel", status == 200 and len(seen) == count and
          abs(seen[0] - 230 / 255) < 1e-6 and abs(seen[side * side] - 20 / 255) < 1e-6 and
          abs(seen[-1] - 10 / 255) < 1e-6, f"status {status}")
    k = reply["class"]
    status, _, data = request("POST", "/api/reconstruct", json.dumps({"capsule": k, "vector": reply["capsules"][k]}),
                              "application/json")
    recon = json.loads(data)
    check(f"POST /api/reconstruct gives 3 channels, {count} pixels in [0, 1]",
          status == 200 and recon["channels"] == 3 and len(recon["pixels"]) == count and
          0 <= min(recon["pixels"]) and max(recon["pixels"]) <= 1)
    status, ctype, data = request("POST", "/api/reconstruct",
                                  json.dumps({"capsule": k, "vector": reply["capsules"][k], "format": "png"}),
                                  "application/json")
    check(f"... or a {side}x{side} RGB PNG", status == 200 and ctype == "image/png" and
          struct.unpack(">II", data[16:24]) == (side, side) and data[25] == 2)
    refused("one channel's pixels", 400, "POST", "/api/predict", json.dumps([0.5] * (side * side)),
            "application/json", f"{count} numbers (3 channels of {side}x{side}")
    refused("capsule 3 of 3", 422, "POST", "/api/reconstruct", json.dumps({"capsule": 3, "vector": [0] * health["capsule_dim"]}),
            "application/json", "capsules 0 to 2")
    refused("image/webp", 415, "POST", "/api/predict", b"RIFF", "image/webp", "not accepted")
    print(f"serve api (colour): {failures} failed")
    sys.exit(1 if failures else 0)


if sys.argv[1] == "--colour":
    colour_model(sys.argv[3])

pid, mnist, predict_json = int(sys.argv[2]), sys.argv[3], sys.argv[4]


def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


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
check("/healthz: 1 channel of 28x28, classes named by their digits",
      health["channels"] == 1 and health["image_size"] == 28 and
      health["class_names"] == [str(k) for k in range(10)], str(health.get("class_names")))
status, ctype, page = request("GET", "/")
check("GET / is the page, to draw or upload", status == 200 and ctype.startswith("text/html") and
      b"<canvas id=\"draw\"" in page and b"type=\"file\"" in page)

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
check("the reply has 10 lengths, 10 capsules of 16, the 784-pixel input of 1 channel",
      len(reply["lengths"]) == 10 and len(reply["capsules"]) == 10 and
      all(len(c) == 16 for c in reply["capsules"]) and len(reply["input"]) == 784 and
      reply["channels"] == 1 and reply["side"] == 28)
check("the class's name is its digit", reply["class_name"] == str(reply["class"]), repr(reply["class_name"]))
length0 = sum(v * v for v in reply["capsules"][reply["class"]]) ** 0.5
check("a capsule's length is its class's length", abs(length0 - reply["lengths"][reply["class"]]) < 1e-5)

# A PNG upload goes through the same preprocessing as capsnet predict of a file.
picture = png([255 - v for v in digit(0)], 28, 28)  # dark ink on white, as drawn
status, _, data = request("POST", "/api/predict", picture, "image/png")
from_png = json.loads(data)
check("POST /api/predict with a PNG", status == 200 and from_png["class"] == labels[8],
      f"status {status}")
status, _, data = request("POST", "/api/predict", bmp([255 - v for v in digit(0)], 28, 28), "image/bmp")
check("... a BMP of the same pixels gives the same input", status == 200 and
      json.loads(data)["input"] == from_png["input"], f"status {status}")
status, _, data = request("POST", "/api/predict", picture, "application/octet-stream")
check("... and so does the PNG as application/octet-stream", status == 200 and
      json.loads(data)["input"] == from_png["input"], f"status {status}")

k = reply["class"]
body = json.dumps({"capsule": k, "vector": reply["capsules"][k]})
status, _, data = request("POST", "/api/reconstruct", body, "application/json")
recon = json.loads(data)
check("POST /api/reconstruct gives 784 pixels of 1 channel in [0, 1]",
      status == 200 and len(recon["pixels"]) == 784 and recon["channels"] == 1 and 0 <= min(recon["pixels"]) and max(recon["pixels"]) <= 1)
status, ctype, data = request("POST", "/api/reconstruct", json.dumps({"capsule": k, "vector": reply["capsules"][k], "format": "png"}), "application/json")
check("... or a 28x28 grey PNG", status == 200 and ctype == "image/png" and data[:8] == b"\x89PNG\r\n\x1a\n" and
      struct.unpack(">II", data[16:24]) == (28, 28) and data[25] == 0)
moved = list(reply["capsules"][k])
moved[0] += 0.25
status, _, data = request("POST", "/api/reconstruct", json.dumps({"capsule": k, "vector": moved}), "application/json")
change = max(abs(a - b) for a, b in zip(json.loads(data)["pixels"], recon["pixels"]))
check("moving one dimension by 0.25 changes the reconstruction", change > 0.01, f"largest pixel change {change:.3f}")

# --- bad requests: a 4xx with a JSON error, and the server keeps serving ----
refused("bad JSON", 400, "POST", "/api/predict", "{\"pixels\": [0.1,", "application/json", "not valid JSON")
refused("783 values", 400, "POST", "/api/predict", json.dumps([0.0] * 783), "application/json", "784 numbers")
refused("three channels' pixels", 400, "POST", "/api/predict", json.dumps([0.0] * 3 * 784), "application/json", "784 numbers")
refused("a pixel of 3", 400, "POST", "/api/predict", json.dumps([0.0] * 783 + [3]), "application/json", "in [0, 1]")
refused("a pixel that is a string", 400, "POST", "/api/predict", json.dumps(["a"] * 784), "application/json", "not a number")
refused("text/plain", 415, "POST", "/api/predict", "hello", "text/plain", "not accepted")
refused("no content type", 415, "POST", "/api/predict", "hello", None, "not accepted")
refused("text labelled image/png", 400, "POST", "/api/predict", "this is not a picture", "image/png", "not an image this program reads")
refused("image/webp", 415, "POST", "/api/predict", b"RIFF", "image/webp", "not accepted")
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
# A leak grows with the requests at a steady rate: a leak of 2.5 KB a request
# (a request's JSON body is about 6 KB, its 784 floats 3 KB) adds 0.5 MB to
# RSS in every round of 200. The allocator's heap instead grows in steps, each
# time the load produces a larger working set than before (a larger batch, two
# batches at once), and then holds it. Such steps are rare but can come late:
# under ctest -j, alone at 343 MB for 1,600 requests, RSS then stepped once to
# 383 MB and stayed there (CI, a Xeon, at 0146a23); alone, it rose 336 -> 357
# MB between 200 and 800 in one run and stayed at 333-335 MB over 5,000 in
# another. So after 800 requests of warm-up, the check takes the growth of
# each of 10 rounds of 200 and requires the median round to grow by less than
# 0.5 MB: a leak grows every round, a step grows one or two.
rss_first = rss_mb()
for _ in range(3):
    load_round()
rss_warm = rss_mb()
trace = [rss_warm]
for _ in range(10):
    load_round()
    trace.append(rss_mb())
growth = sorted(b - a for a, b in zip(trace, trace[1:]))
median = (growth[4] + growth[5]) / 2
check("memory is flat over 2,000 requests after 800 (median growth of a round of 200 < 0.5 MB)",
      median < 0.5,
      f"median {median:.2f} MB; RSS {rss_rest:.0f} MB at rest, {rss_first:.0f} after 200, "
      f"{rss_warm:.0f} after 800, then per 200: " + " ".join(f"{x:.0f}" for x in trace[1:]))

print(f"serve api: {failures} failed")
sys.exit(1 if failures else 0)
