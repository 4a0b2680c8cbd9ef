#!/usr/bin/env python3
"""Drives the queen's web dashboard in headless Chromium (Debian's `chromium` and
`chromium-driver`) over WebDriver, as a user would with a keyboard and a mouse.

    dashboard-check.py --url http://127.0.0.1:8080 --key KEY --pull hf:org/repo
                       --node NAME --broken-node NAME --screenshots DIR
                       [--chromium /usr/bin/chromium] [--chromedriver /usr/bin/chromedriver]

Checks, in order: every form control has a label; a wrong key is refused with a readable
message naming the refusal; the right key shows the lab with the queen's own machine (its
CPU backend), the registered node NAME (its hive not started) and the registered node
BROKEN (whose hive could not be started) with its last error; the views are buttons reached
with Tab; the Models view lists NAME's hive as not running without starting it; pulling a
model to the queen's machine shows progress part way (the Hub look-alike should send it
slowly) and the model appears in its list; a chat message pinned to the queen's machine, with
a system prompt and a token limit, streams a reply into the page with its tokens/s and ends
at the limit; a long one, placed by the queen, shows in the lab as a busy slot with tokens/s
while it streams and is stopped by the stop button; the lab then lists the worker with no
slot busy, and its chart has drawn tokens and requests; the Logs view follows the node's
logs (a request made while following shows up); the worker is stopped from the lab, the
model removed from the Models view and the node's hive stopped from the lab. The key never
appears in a URL the page loaded. Saves `lab.png` and `chat.png` into DIR. Exits 0 and
prints "dashboard check passed" when everything holds.
"""

import argparse
import json
import os
import re
import sys
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait


def browser(args):
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,960", "--lang=en-US"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(args.chromedriver), options=options)


def text_of(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def click(wait, selector):
    """Clicks what `selector` finds once it can; the live views redraw their tables, so an
    element found may be replaced before the click lands."""
    def clicked(driver):
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        if not found or not found[0].is_enabled():
            return False
        found[0].click()
        return True
    wait.until(clicked)


def cells(driver, selector):
    return [c.text for c in driver.find_element(By.CSS_SELECTOR, selector).find_elements(By.CSS_SELECTOR, "th, td")]


def ask_queen(args, model, prompt):
    """One short chat completion straight to the queen's OpenAI endpoint, as another tool would."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
    req = urllib.request.Request(args.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {args.key}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 200, resp.status


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--pull", required=True, help="a model reference the queen can download")
    p.add_argument("--node", required=True, help="a registered node whose hive is not running")
    p.add_argument("--broken-node", required=True, help="a registered node whose hive failed to start")
    p.add_argument("--screenshots", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    for path in (args.chromium, args.chromedriver):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: apt-get install chromium chromium-driver")
    os.makedirs(args.screenshots, exist_ok=True)

    driver = browser(args)
    wait = WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,))
    try:
        driver.get(args.url + "/")

        # Basic accessibility: labelled controls, views reachable by keyboard.
        for control in driver.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
            control_id = control.get_attribute("id")
            labels = driver.find_elements(By.CSS_SELECTOR, f'label[for="{control_id}"]')
            assert labels, f"the control #{control_id} has no label"
        # The queen has a key: the page asks for it, and a wrong one is refused readably.
        wait.until(seen.visibility_of_element_located((By.ID, "key-gate")))
        key = driver.find_element(By.ID, "key-input")
        key.send_keys("not-the-key", Keys.ENTER)
        # Before, the page said the queen refused to answer without a key; now, this key.
        wait.until(lambda d: "refused this key" in text_of(d, "key-message"))
        message = text_of(driver, "key-message")
        assert "INVALID_API_KEY" in message, message
        assert driver.find_element(By.ID, "key-gate").is_displayed()

        driver.find_element(By.ID, "key-input").send_keys(args.key, Keys.ENTER)
        here = '#nodes tr[data-node="localhost"]'
        wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, here)))
        assert not driver.find_element(By.ID, "key-gate").is_displayed()
        node = f'#nodes tr[data-node="{args.node}"]'
        wait.until(lambda d: cells(d, node)[1] != "running"
                   and not d.find_element(By.CSS_SELECTOR, node + " button").is_enabled())
        broken = f'#nodes tr[data-node="{args.broken_node}"]'
        wait.until(lambda d: cells(d, broken)[1] == "unreachable")
        error = cells(driver, broken)[5]
        assert args.broken_node in error, f"the last error is shown: {error!r}"
        assert "cpu" in cells(driver, node)[2], f"the registry's backends: {cells(driver, node)}"

        # Basic accessibility: the views are buttons, one Tab apart.
        tabs = driver.find_elements(By.CSS_SELECTOR, "nav button")
        assert [t.text for t in tabs] == ["Lab", "Models", "Logs", "Chat"], [t.text for t in tabs]
        tabs[0].send_keys(Keys.TAB)
        assert driver.switch_to.active_element.text == "Models", "Tab moves between the views"

        # The Models view reads running hives only: the node's stays stopped.
        driver.find_element(By.ID, "tab-models").click()
        stopped = f'[data-catalog="{args.node}"]'
        wait.until(lambda d: "not running" in d.find_element(By.CSS_SELECTOR, stopped).text)
        assert cells(driver, node)[1] != "running", cells(driver, node)

        # Models: pull one to the queen's machine, with progress, and see it listed.
        wait.until(lambda d: [o.text for o in Select(d.find_element(By.ID, "pull-node")).options])
        Select(driver.find_element(By.ID, "pull-node")).select_by_value("localhost")
        driver.find_element(By.ID, "pull-model").send_keys(args.pull, Keys.ENTER)
        def part_way(d):
            bar = d.find_element(By.ID, "pull-progress")
            value, top = float(bar.get_attribute("value") or 0), float(bar.get_attribute("max") or 1)
            return 0 < value < top and " of " in text_of(d, "pull-text")
        WebDriverWait(driver, 60, poll_frequency=0.1).until(part_way)
        wait.until(lambda d: text_of(d, "pull-text").startswith(("Pulled", "Pull failed")))
        assert text_of(driver, "pull-text") == f"Pulled {args.pull} to localhost.", text_of(driver, "pull-text")
        progress = driver.find_element(By.ID, "pull-progress")
        assert progress.get_attribute("value") == progress.get_attribute("max"), "progress ends full"
        wait.until(seen.presence_of_element_located(
            (By.CSS_SELECTOR, f'[data-catalog="localhost"] tr[data-model="{args.pull}"]')))

        # Chat with it: the reply streams into the page.
        driver.find_element(By.ID, "tab-chat").click()
        wait.until(lambda d: any(args.pull in o.get_attribute("value")
                                 for o in Select(d.find_element(By.ID, "chat-model")).options))
        choice = next(o.get_attribute("value") for o in Select(driver.find_element(By.ID, "chat-model")).options
                      if args.pull in o.get_attribute("value"))
        Select(driver.find_element(By.ID, "chat-model")).select_by_value(choice)
        Select(driver.find_element(By.ID, "chat-node")).select_by_value("localhost")
        driver.find_element(By.ID, "chat-system").send_keys("You are a friendly assistant.")
        driver.find_element(By.ID, "chat-temperature").clear()
        driver.find_element(By.ID, "chat-temperature").send_keys("0")
        driver.find_element(By.ID, "chat-max-tokens").send_keys("40")
        driver.find_element(By.ID, "chat-input").send_keys("Write a short poem about bees.", Keys.ENTER)
        reply = wait.until(seen.presence_of_element_located(
            (By.CSS_SELECTOR, "#messages li.assistant[data-done]")))
        text = reply.find_element(By.CSS_SELECTOR, ".text").text
        meta = reply.find_element(By.CSS_SELECTOR, ".meta").text
        assert len(text.split()) >= 5, f"the reply is too short: {text!r}"
        assert "tokens/s" in meta and "first token after" in meta, meta
        count = int(meta.split()[0])
        assert count <= 40 and meta.endswith("length") == (count == 40), f"the token limit holds: {meta}"
        assert not text_of(driver, "chat-error"), text_of(driver, "chat-error")
        assert not driver.find_element(By.ID, "chat-stop").is_enabled()
        driver.save_screenshot(os.path.join(args.screenshots, "chat.png"))

        # A long answer, placed by the queen, is busy in the lab while it streams; the stop
        # button ends it and the chat goes on.
        driver.find_element(By.ID, "chat-max-tokens").clear()
        Select(driver.find_element(By.ID, "chat-node")).select_by_value("")
        # Counting, greedily, keeps the model going for many seconds.
        driver.find_element(By.ID, "chat-input").send_keys("Count from 1 to 1000, one number per line.", Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages li.assistant")) == 2
                   and "tokens/s" in d.find_elements(By.CSS_SELECTOR, "#messages li.assistant .meta")[1].text)
        driver.find_element(By.ID, "tab-lab").click()
        busy = "#workers tbody tr"
        wait.until(lambda d: cells(d, busy)[4].startswith("1/") and float(cells(d, busy)[5]) > 0)
        driver.find_element(By.ID, "tab-chat").click()
        driver.find_element(By.ID, "chat-stop").click()
        stopped = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#messages li.assistant[data-done]")[1:])[0]
        meta = stopped.find_element(By.CSS_SELECTOR, ".meta").text
        assert meta.endswith("stopped"), meta
        assert driver.find_element(By.ID, "chat-send").is_enabled()

        # The lab lists the worker that answered, and the chart has points.
        driver.find_element(By.ID, "tab-lab").click()
        row = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#workers tbody tr")))
        assert args.pull in row.text and "localhost" in row.text, row.text
        wait.until(lambda d: int(d.find_element(By.ID, "chart").get_attribute("data-points") or 0) >= 3)
        # The stopped answer freed its slot on the worker.
        wait.until(lambda d: "0 busy slots" in text_of(d, "rate-now") and cells(d, busy)[4].startswith("0/"))
        drawn = driver.execute_script(
            "const c = document.getElementById('chart');"
            "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++; return n;")
        assert drawn > 100, f"the chart is blank ({drawn} pixels drawn)"
        summary = driver.find_element(By.ID, "chart").get_attribute("aria-label")
        peaks = [float(x) for x in re.findall(r"peak ([0-9.]+)", summary)]
        assert len(peaks) == 2 and all(p > 0 for p in peaks), f"tokens and requests are charted: {summary}"
        assert cells(driver, here)[3] != "–", f"free RAM is shown: {cells(driver, here)}"

        driver.save_screenshot(os.path.join(args.screenshots, "lab.png"))

        # Logs: the node's hive and worker, followed.
        driver.find_element(By.ID, "tab-logs").click()
        Select(driver.find_element(By.ID, "logs-node")).select_by_value("localhost")
        driver.find_element(By.ID, "logs-follow").click()
        wait.until(lambda d: "[hive]" in text_of(d, "log-lines") and "[worker" in text_of(d, "log-lines"))
        # Following: a request made now is logged by the worker while the view is open.
        finished = text_of(driver, "log-lines").count("inference finished")
        ask_queen(args, f"localhost/{choice}", "Say yes.")
        wait.until(lambda d: text_of(d, "log-lines").count("inference finished") > finished)
        driver.find_element(By.ID, "logs-stop").click()
        wait.until(lambda d: not d.find_element(By.ID, "logs-stop").is_enabled())

        # Actions: stop the worker from the lab, then remove the model.
        driver.find_element(By.ID, "tab-lab").click()
        click(wait, "#workers tbody tr button")
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#workers tbody tr"))
        assert driver.find_element(By.ID, "no-workers").is_displayed()
        driver.find_element(By.ID, "tab-models").click()
        click(wait, f'[data-catalog="localhost"] tr[data-model="{args.pull}"] button')
        wait.until(lambda d: text_of(d, "pull-text") == f"Removed {args.pull} from localhost.")
        wait.until(lambda d: not d.find_elements(
            By.CSS_SELECTOR, f'[data-catalog="localhost"] tr[data-model="{args.pull}"]'))

        # Stop the node's hive from the lab; the Models view then leaves it stopped.
        driver.find_element(By.ID, "tab-lab").click()
        click(wait, here + " button")
        wait.until(lambda d: text_of(d, "notice").startswith("Stopped the hive on localhost"))
        wait.until(lambda d: cells(d, here)[1] != "running"
                   and not d.find_element(By.CSS_SELECTOR, here + " button").is_enabled())
        driver.find_element(By.ID, "tab-models").click()
        wait.until(lambda d: "not running" in d.find_element(By.CSS_SELECTOR, '[data-catalog="localhost"]').text)

        # The key went as a header only: no URL the page loaded holds it.
        urls = driver.execute_script(
            "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)];")
        assert len(urls) > 5 and not any(k in u for u in urls for k in (args.key, "not-the-key")), urls
    finally:
        driver.quit()
    print("dashboard check passed")


if __name__ == "__main__":
    main()
