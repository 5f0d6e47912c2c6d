#!/usr/bin/python3
"""capsnet serve's page in a real browser: Debian's chromium, headless,
driven by Selenium (python3-selenium, chromium-driver).

Draws MNIST test digits on the page's canvas with pointer events (a stroke per
run of ink in each row, scaled 10x), checks the class the page shows against
the digit's label and against the API's answer for the same drawing, moves a
capsule-dimension slider by dragging it and checks that the reconstruction
changed (and how long that took), then picks another capsule.

Usage: browser_test.py URL MNIST_DIR [--index I ...] [--screenshot PNG]
Exit status 0 when every check passed.
"""
import argparse
import base64
import json
import sys
import time
import urllib.request

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


def api_predict(url, png):
    request = urllib.request.Request(url + "api/predict", data=png,
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mnist")
    parser.add_argument("--index", type=int, nargs="+", default=[0])
    parser.add_argument("--screenshot")
    args = parser.parse_args()
    url = args.url if args.url.endswith("/") else args.url + "/"

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        check("the page loads and reads /healthz", True)
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
            check(f"the page shows the API's class for the same drawing", shown == str(answer["class"]),
                  f"API {answer['class']}")
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
    finally:
        driver.quit()
    print(f"browser: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
