"""Console first load in Chromium (issue 13: ≤ 1 s; spec TC-DASH-004: under 3 s).

Starts the central stack (bench/_stack.py) with some LOTs, then, in Debian's headless Chromium (Selenium), `--runs`
times: clears the browser cache, opens /console and reads the Navigation Timing entry (response end, DOM content
loaded, load event end, in ms from the navigation's start), then signs in and times until the today board shows
its counts (the board's API answer drawn). "first load" = load event end + sign-in to board; the sign-in request
itself (argon2 password check, slow on purpose) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import time
from typing import Any

from bench._stack import bench_stack, create_lots, percentiles, write_results
from deploy.localstack.children import mes_command
from tests.support import browser

USER = "console-bench"
NAVIGATION = (
    "const n = performance.getEntriesByType('navigation')[0];"
    "return {response_end: n.responseEnd, dom_content_loaded: n.domContentLoadedEventEnd, load: n.loadEventEnd,"
    " transfer_bytes: performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, n.transferSize)};"
)


def one_load(driver: Any, api_url: str, password: str) -> dict[str, float]:
    from selenium.webdriver.common.by import By

    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get("about:blank")
    driver.get(f"{api_url}/console")
    timing = browser.wait_for(
        lambda: (t := driver.execute_script(NAVIGATION)) and t["load"] > 0 and t, what="the load event"
    )
    driver.find_element(By.NAME, "username").send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(password)
    clicked = time.perf_counter()
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    browser.wait_for(lambda: driver.find_element(By.ID, "cardCompleted").text != "", what="the board")
    board_ms = (time.perf_counter() - clicked) * 1000
    # The sign-in's password check (argon2, deliberately slow) is not the console's: report it apart.
    login_ms = driver.execute_script(
        "const r = performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/auth/login'));"
        "return r.length ? r[r.length - 1].duration : 0;"
    )
    driver.execute_script("document.getElementById('logout').click()")
    return {
        **{k: float(v) for k, v in timing.items()},
        "login_to_board": board_ms,
        "first_load": timing["load"] + board_ms,
        "login_request": float(login_ms),
        "first_load_without_password_check": timing["load"] + board_ms - float(login_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lots", type=int, default=30, help="LOTs created first (they show on the board)")
    args = parser.parse_args()
    reason = browser.missing()
    if reason:
        raise SystemExit(f"console_first_load: {reason}")
    with bench_stack(log_level="WARNING") as stack:
        create_lots(stack.api_url, args.lots, headers=stack.auth_headers)
        password = secrets.token_urlsafe(18)
        subprocess.run(
            mes_command("user", "add", USER, "--role", "viewer", "--password-stdin"),
            input=f"{password}\n",
            text=True,
            check=True,
            env={**os.environ, **stack.env},
            stdout=subprocess.DEVNULL,
        )
        with browser.chromium() as driver:
            one_load(driver, stack.api_url, password)  # the browser's own start-up is not the console's
            runs = [one_load(driver, stack.api_url, password) for _ in range(args.runs)]
    summary = {key: percentiles([run[key] for run in runs]) for key in runs[0] if key != "transfer_bytes"}
    for key, stats in summary.items():
        print(f"{key:>20}: p50 {stats['p50']:.0f} ms, p95 {stats['p95']:.0f} ms, max {stats['max']:.0f} ms")
    print(f"{'bytes transferred':>20}: {runs[0]['transfer_bytes']:.0f} (cold cache, all files)")
    print(f"results: {write_results('console_first_load', {'args': vars(args), 'summary': summary, 'runs': runs})}")


if __name__ == "__main__":
    main()
