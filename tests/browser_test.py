#!/usr/bin/python3
"""capsnet serve's page in a real browser: Debian's chromium, headless,
driven by Selenium (python3-selenium, chromium-driver).

A digit model: draws MNIST test digits on the page's canvas with pointer
events (a stroke per run of ink in each row, scaled 10x), checks the class the
page shows against the digit's label and against the API's answer for the same
drawing, moves a capsule-dimension slider by dragging it and checks that the
reconstruction changed (and how long that took), then picks another capsule;
then uploads a digit's picture through the file chooser and drops another on
the page.

A colour model (--colour FOLDER, the model's CLASS/*.png): the drawing canvas
is hidden with a note, the classes are named in the bars and the picker, and
pictures uploaded and dropped are shown, classified and reconstructed in
colour, as the API answers for the same bytes.

Usage: browser_test.py URL MNIST_DIR [--index I ...] [--screenshot PNG]
       browser_test.py URL --colour FOLDER [--screenshot PNG]
Exit status 0 when every check passed.
"""
import argparse
import base64
import json
import os
import struct
import sys
import tempfile
import time
import ssl
import urllib.request
import zlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + (f" ({detail})" if detail else ""), flush=True)
    failures += 0 if ok else 1


def mnist_digit(directory, index):
    images = open(f"{directory}/t10k-images-idx3-ubyte", "rb").read()
    labels = open(f"{directory}/t10k-labels-idx1-ubyte", "rb").read()
    pixels = images[16 + 784 * index:16 + 784 * (index + 1)]
    return [[pixels[28 * y + x] / 255 for x in range(28)] for y in range(28)], labels[8 + index]


def draw_digit(driver, canvas, digit):
    """One pointer stroke along each horizontal run of ink, 10 canvas pixels per MNIST pixel."""
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return [r.width, r.height];", canvas)
    scale_x, scale_y = rect[0] / 28, rect[1] / 28
    actions = ActionChains(driver, duration=0)
    strokes = 0
    for y, row in enumerate(digit):
        x = 0
        while x < 28:
            if row[x] < 0.5:
                x += 1
                continue
            start = x
            while x < 28 and row[x] >= 0.5:
                x += 1
            # Offsets are from the element's centre.
            cx, cy = (start + 0.5) * scale_x - rect[0] / 2, (y + 0.5) * scale_y - rect[1] / 2
            actions.move_to_element_with_offset(canvas, cx, cy).click_and_hold()
            actions.move_by_offset(int((x - 1 - start) * scale_x), 0).release()
            strokes += 1
    actions.perform()
    return strokes


def canvas_png(driver, element):
    data = driver.execute_script("return arguments[0].toDataURL('image/png');", element)
    return base64.b64decode(data.split(",", 1)[1])


API_HEADERS = {}  # the Authorization header when the server has a token


def api_post(url, path, body, content_type):
    request = urllib.request.Request(url + path, data=body,
                                     headers={"Content-Type": content_type, **API_HEADERS})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def api_predict(url, png):
    return api_post(url, "api/predict", png, "image/png")


def grey_png(rows):
    """An 8-bit grey PNG of rows of 0-255 values."""
    raw = b"".join(b"\0" + bytes(row) for row in rows)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body +
                                struct.pack(">I", zlib.crc32(kind + body)))
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def canvas_rgb(driver, element_id):
    """The canvas's pixels as [r, g, b] each."""
    data = driver.execute_script(
        "const c = document.getElementById(arguments[0]); return Array.from(c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data);", element_id)
    return [data[i:i + 3] for i in range(0, len(data), 4)]


def planes_rgb(values, channels):
    """API pixels (channel after channel, in [0, 1]) as the [r, g, b] a page should draw."""
    plane = len(values) // channels
    return [[round(values[(c if channels == 3 else 0) * plane + i] * 255) for c in range(3)]
            for i in range(plane)]


def largest_difference(a, b):
    if len(a) != len(b):
        return float("inf")
    return max(abs(x - y) for p, q in zip(a, b) for x, y in zip(p, q))


def answers(driver):
    return int(driver.execute_script("return document.body.dataset.answers || 0"))


def upload(driver, wait, path):
    """Chooses `path` in the page's file input (Selenium sets it through
    DevTools' DOM.setFileInputFiles) and waits for the answer."""
    before = answers(driver)
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(path))
    wait.until(lambda d: answers(d) > before)


def drop(driver, wait, png, name, target_id):
    """Drops a file of `png` bytes on the element `target_id`: the drag events
    a user's drop fires, with a DataTransfer holding the file. Returns whether
    the page marked itself as a drop target while dragged over."""
    before = answers(driver)
    marked = driver.execute_script("""
        const [b64, name, id] = arguments;
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], name, { type: "image/png" }));
        const target = document.getElementById(id);
        const fire = (type) => target.dispatchEvent(
            new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
        fire("dragenter"); fire("dragover");
        const marked = document.body.classList.contains("dropping");
        fire("drop");
        return marked && !document.body.classList.contains("dropping");""",
        base64.b64encode(png).decode(), name, target_id)
    wait.until(lambda d: answers(d) > before)
    return marked


def check_shown(driver, url, png, what, label=None):
    """The page shows the API's answer for `png`: its class name, the winner's
    bar, and the input the network saw (grey or colour)."""
    answer = api_predict(url, png)
    shown = driver.find_element(By.ID, "predicted").text
    check(f"{what}: the page shows the API's class name", shown == answer["class_name"],
          f"page {shown!r}, API {answer['class_name']!r}")
    if label is not None:
        check(f"{what}: and it is the label", shown == str(label), f"label {label}")
    winners = driver.find_elements(By.CSS_SELECTOR, "#bars span.winner")
    check(f"{what}: the winning capsule's bar is marked with the name",
          len(winners) == 3 and winners[0].text == shown)
    difference = largest_difference(canvas_rgb(driver, "input"),
                                    planes_rgb(answer["input"], answer["channels"]))
    check(f"{what}: the {answer['side']}x{answer['side']} input shown is the API's "
          f"({answer['channels']} channel(s))", difference <= 1, f"largest difference {difference}")
    return answer


def digit_uploads(driver, wait, url, mnist):
    """A digit's picture through the file chooser, another dropped on the page."""
    digit, label = mnist_digit(mnist, 2)
    png = grey_png([[255 - round(v * 255) for v in row] for row in digit])  # dark ink on white
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "digit.png")
        open(path, "wb").write(png)
        upload(driver, wait, path)
    check_shown(driver, url, png, "test digit 2 uploaded with the file chooser", label)
    check("the upload is previewed", driver.find_element(By.ID, "preview").is_displayed())
    digit, label = mnist_digit(mnist, 3)
    png = grey_png([[255 - round(v * 255) for v in row] for row in digit])
    marked = drop(driver, wait, png, "three.png", "input")
    check("dragging a file over the page marks it as a drop target", marked)
    check_shown(driver, url, png, "test digit 3 dropped on the page", label)


def colour_model(driver, wait, url, folder, screenshot=None):
    health = json.loads(urllib.request.urlopen(url + "healthz", timeout=30).read())
    names = health["class_names"]
    check("a colour model: the drawing canvas is hidden",
          not driver.find_element(By.ID, "draw").is_displayed())
    note = driver.find_element(By.ID, "colour-note")
    check("with a note saying why", note.is_displayed() and "colour" in note.text, note.text)
    options = [o.text for o in Select(driver.find_element(By.ID, "capsule")).options]
    check("the capsule picker names the classes", options == ["predicted"] + names, str(options))
    recon = driver.find_element(By.ID, "recon")
    version = lambda: int(recon.get_attribute("data-version"))
    pictures = [os.path.join(folder, name, sorted(os.listdir(os.path.join(folder, name)))[0])
                for name in sorted(os.listdir(folder))]
    v0 = version()
    upload(driver, wait, pictures[0])
    answer = check_shown(driver, url, open(pictures[0], "rb").read(), "a colour picture uploaded")
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#bars span.name")]
    check("the bars are labelled with the class names", labels == names, str(labels))
    shown = canvas_rgb(driver, "input")
    check("the input is drawn in colour", any(p[0] != p[2] for p in shown))
    wait.until(lambda d: version() > v0)
    time.sleep(0.3)  # let a later reconstruction land, if any
    k = answer["class"]
    expected = api_post(url, "api/reconstruct", json.dumps({"capsule": k, "vector": answer["capsules"][k]})
                        .encode(), "application/json")
    difference = largest_difference(canvas_rgb(driver, "recon"), planes_rgb(expected["pixels"], 3))
    check(f"the reconstruction from capsule {names[k]!r} is drawn in colour, as the API's",
          expected["channels"] == 3 and difference <= 1, f"largest difference {difference}")
    png = open(pictures[-1], "rb").read()
    check("dragging a file over the page marks it as a drop target",
          drop(driver, wait, png, os.path.basename(pictures[-1]), "input"))
    check_shown(driver, url, png, "a colour picture dropped on the page")
    status = driver.find_element(By.ID, "status").text
    check("no error shown", status == "", status)
    if screenshot:
        driver.save_screenshot(screenshot)
        print("screenshot:", screenshot)


def digit_model(driver, wait, url, args):
    """Drawing, the slider, the picker (the screenshot is taken here, of a
    drawing), then uploads."""
    canvas = driver.find_element(By.ID, "draw")
    for index in args.index:
        driver.find_element(By.ID, "clear").click()
        digit, label = mnist_digit(args.mnist, index)
        before = int(driver.execute_script("return document.body.dataset.answers || 0"))
        strokes = draw_digit(driver, canvas, digit)
        # Every stroke's end asks for a prediction; wait for the last answer.
        wait.until(lambda d: int(d.execute_script(
            "return document.body.dataset.answers || 0")) >= before + strokes)
        shown = driver.find_element(By.ID, "predicted").text
        answer = api_predict(url, canvas_png(driver, canvas))
        check(f"test digit {index} drawn in {strokes} strokes: the page shows its label",
              shown == str(label), f"page {shown!r}, label {label}")
        check(f"the page shows the API's class for the same drawing", shown == answer["class_name"],
              f"API {answer['class_name']!r}")
        winners = driver.find_elements(By.CSS_SELECTOR, "#bars span.winner")
        check("the winning capsule's bar is marked",
              len(winners) == 3 and winners[0].text == shown)
        # The preprocessed input shown is the API's (the network's view).
        shown_input = driver.execute_script(
            "const c = document.getElementById('input'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; const out = [];"
            "for (let i = 0; i < d.length; i += 4) out.push(d[i]); return out;")
        expected = [round(v * 255) for v in answer["input"]]
        check("the 28x28 input on the page is the preprocessed image",
              max(abs(a - b) for a, b in zip(shown_input, expected)) <= 1)

    recon = driver.find_element(By.ID, "recon")
    version = lambda: int(recon.get_attribute("data-version"))
    wait.until(lambda d: version() > 0)
    time.sleep(0.3)  # let the reconstruction of the last stroke land
    first, v0 = canvas_png(driver, recon), version()
    slider = driver.find_element(By.ID, "dim0")
    ActionChains(driver, duration=0).click_and_hold(slider).move_by_offset(60, 0).release().perform()
    wait.until(lambda d: version() > v0)
    time.sleep(0.3)
    latency = float(recon.get_attribute("data-latency"))
    moved = canvas_png(driver, recon)
    value = float(slider.get_attribute("value"))
    check("dragging slider dim0 moves it", value > 0, f"value {value:+.2f}")
    check("and changes the reconstruction", moved != first,
          f"redrawn {latency:.0f} ms after the slider moved, as the page measures it")
    v1 = version()
    Select(driver.find_element(By.ID, "capsule")).select_by_value("3")
    wait.until(lambda d: version() > v1)
    time.sleep(0.3)
    check("picking capsule 3 redraws from it", canvas_png(driver, recon) != moved)
    Select(driver.find_element(By.ID, "capsule")).select_by_value("auto")
    if args.screenshot:
        driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur();")
        time.sleep(0.5)
        driver.save_screenshot(args.screenshot)
        print("screenshot:", args.screenshot)
    print(json.dumps({"slider_to_redraw_ms": latency}))
    digit_uploads(driver, wait, url, args.mnist)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mnist", nargs="?")
    parser.add_argument("--index", type=int, nargs="+", default=[0])
    parser.add_argument("--colour", metavar="FOLDER")
    parser.add_argument("--screenshot")
    parser.add_argument("--insecure", action="store_true",
                        help="accept the server's self-signed certificate (HTTPS tests)")
    args = parser.parse_args()
    # A token in the fragment (#token=...) is for the page; the API calls of
    # this script carry it as a header.
    base, _, fragment = args.url.partition("#")
    url = base if base.endswith("/") else base + "/"
    token = dict(p.split("=", 1) for p in fragment.split("&") if "=" in p).get("token")
    if token:
        API_HEADERS["Authorization"] = "Bearer " + token
    if args.insecure:
        ssl._create_default_https_context = ssl._create_unverified_context

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    if args.insecure:
        options.add_argument("--ignore-certificate-errors")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url + ("#" + fragment if fragment else ""))
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        check("the page loads and reads /healthz", True)
        if args.colour:
            colour_model(driver, wait, url, args.colour, args.screenshot)
        else:
            digit_model(driver, wait, url, args)
    finally:
        driver.quit()
    print(f"browser: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
