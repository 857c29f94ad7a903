#!/usr/bin/env python3
"""Drives the logbook web console in headless Chromium (selenium + chromium-driver) and prints
what a person would see, as one JSON object, for tests/console_browser.rs to check.

Usage: browser_check.py CONFIG_JSON   (the test writes it: URLs, tokens, order ids, paths)

Nothing is asserted here beyond "the element appeared within 10 s": the Rust test compares
the observations with the API and the store. Screenshots are written when the config names
a directory (scripts/console-screenshots does, for docs/console/)."""

import json
import os
import socket
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def resp_command(addr, *commands):
    """Sends RESP commands on one connection and returns the raw replies (enough for AUTH,
    APPEND)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for args in commands:
            frame = f"*{len(args)}\r\n".encode()
            for arg in args:
                data = arg.encode()
                frame += f"${len(data)}\r\n".encode() + data + b"\r\n"
            sock.sendall(frame)
        time.sleep(0.2)
        return sock.recv(65536).decode(errors="replace")


class Console:
    def __init__(self, config):
        self.config = config
        options = Options()
        options.binary_location = config["chromium"]
        for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,800", "--hide-scrollbars"]:
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(config["chromedriver"]), options=options)
        self.url = config["url"]
        self.shots = config.get("screenshots")
        self.scroll = {}

    def viewport(self, size):
        width, height = SIZES[size]
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"})

    def wait(self, condition, what):
        try:
            return WebDriverWait(self.driver, 10).until(condition)
        except Exception as error:  # the test prints the page for a person to look at
            raise RuntimeError(f"waited 10 s for {what}; page text: {self.text('body')[:2000]}") from error

    def text(self, css):
        elements = self.driver.find_elements(By.CSS_SELECTOR, css)
        return elements[0].text if elements else ""

    def sign_in(self, token):
        self.driver.get(self.url + "/")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(self.url + "/#/streams")
        self.driver.refresh()
        field = self.wait(lambda d: [e for e in d.find_elements(By.ID, "token") if e.is_displayed()], "the sign-in form")[0]
        field.send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        self.wait(lambda d: d.find_element(By.ID, "who").text != "", "the signed-in identity")
        return self.text("#who")

    def open(self, route, ready_css):
        self.driver.get(self.url + "/#/" + route)
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ready_css), ready_css)

    def measure(self, name, route, ready_css):
        """Loads the page at both sizes: its widths (and screenshots)."""
        for size in SIZES:
            self.viewport(size)
            self.open(route, ready_css)
            time.sleep(0.2)
            # The page's width, the viewport's, and the most any table's box must scroll inside.
            widths = self.driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth,"
                " Math.max(0, ...[...document.querySelectorAll('.scroll')].map(s => s.scrollWidth - s.clientWidth))]")
            self.scroll[f"{name}@{size}"] = widths
            if self.shots:
                self.driver.save_screenshot(os.path.join(self.shots, f"{name}-{size}.png"))
        self.viewport("desktop")

    def api_status(self, path):
        """The HTTP status the page's own token gets for GET /api/<path>."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/api/' + arguments[0], {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('logbook-token')}})"
            ".then(r => r.json().then(b => done([r.status, b])))", path)


def main():
    config = json.load(open(sys.argv[1]))
    seen = {}
    console = Console(config)
    try:
        driver = console.driver
        seen["who_admin"] = console.sign_in(config["admin_token"])

        order = config["order"]
        console.measure("order", "order/" + order[:8], "#order-state")
        seen["order"] = {
            "shown_id": console.text("#order-id-shown"),
            "state": console.text("#order-state"),
            "status": console.text("#order-status dl"),
            "steps": [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#order-steps li")],
            "types": [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#timeline .event .type")],
            "days": [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#timeline .day")],
        }
        # Expanding an event shows its data and metadata JSON.
        first = driver.find_element(By.CSS_SELECTOR, "#timeline details.event summary")
        first.click()
        seen["order"]["first_data"] = console.text("#timeline details.event[open] pre.data")
        seen["order"]["first_metadata"] = console.text("#timeline details.event[open] pre.metadata")

        console.measure("funnel", "funnel?days=30", "#stage-table")
        seen["funnel"] = {
            "bars": len(driver.find_elements(By.CSS_SELECTOR, "#stage-chart rect")),
            "stages": [[c.text for c in row.find_elements(By.TAG_NAME, "td")]
                       for row in driver.find_elements(By.CSS_SELECTOR, "#stage-table tbody tr")],
            "conversion": [[c.text for c in row.find_elements(By.TAG_NAME, "td")]
                           for row in driver.find_elements(By.CSS_SELECTOR, "#conversion-table tbody tr")],
            "conversion_bars": len(driver.find_elements(By.CSS_SELECTOR, "#conversion-chart rect")),
        }

        console.measure("streams", "streams?prefix=order-", "table.streams tbody tr")
        seen["streams"] = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "table.streams tbody td:first-child")]
        console.measure("health", "health", "#health .kpi")
        seen["health"] = console.text("#health")

        # The live tail: an event appended after the page connected arrives.
        console.open("tail", "#tail-events")
        console.wait(lambda d: d.find_element(By.ID, "tail-state").text == "live", "the tail to connect")
        resp_command(config["resp"], ["AUTH", "admin", config["admin_token"]],
                     ["APPEND", "console-tail-1", "TAIL_CHECKED", '{"n": "<img src=x id=injected>"}'])
        console.wait(lambda d: "console-tail-1" in d.find_element(By.ID, "tail-events").text, "the appended event")
        seen["tail"] = console.text("#tail-events li")
        # Event data is shown as text, never parsed as markup.
        driver.find_element(By.CSS_SELECTOR, "#tail-events li summary").click()
        seen["tail_data"] = console.text("#tail-events li pre.data")
        seen["injected_elements"] = len(driver.find_elements(By.ID, "injected"))
        if console.shots:
            for size in SIZES:
                console.viewport(size)
                time.sleep(0.2)
                widths = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
                console.scroll[f"tail@{size}"] = widths
                driver.save_screenshot(os.path.join(console.shots, f"tail-{size}.png"))
            console.viewport("desktop")

        # A tenant sees its own order, not another tenant's: by id, by prefix, by API, in the tail.
        seen["who_acme"] = console.sign_in(config["acme_token"])
        console.open("order/" + config["acme_order"], "#order-state")
        seen["acme_own_state"] = console.text("#order-state")
        other = config["globex_order"]
        console.open("order/" + other, "#order .error")
        seen["acme_other_by_id"] = console.text("#order .error")
        console.open("order/" + other[:3], "#order .error")
        seen["acme_other_by_prefix"] = console.text("#order .error")
        seen["acme_api_order"] = console.api_status("order?id=" + other)
        seen["acme_api_stream"] = console.api_status("stream?name=order-" + other)
        seen["acme_api_streams"] = console.api_status("streams?prefix=")
        seen["acme_api_health"] = console.api_status("health")
        seen["acme_nav"] = console.text("#nav")
        console.open("tail", "#tail-events")
        console.wait(lambda d: d.find_element(By.ID, "tail-state").text == "live", "the tenant's tail to connect")
        resp_command(config["resp"], ["AUTH", "globex", config["globex_token"]],
                     ["APPEND", "secret-globex", "GLOBEX_ONLY", "{}"])
        resp_command(config["resp"], ["AUTH", "acme", config["acme_token"]],
                     ["APPEND", "acme-visible", "ACME_SEEN", "{}"])
        console.wait(lambda d: "acme-visible" in d.find_element(By.ID, "tail-events").text, "the tenant's own event")
        seen["acme_tail"] = console.text("#tail-events")
        seen["scroll"] = console.scroll
    finally:
        console.driver.quit()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
