"""The live page's cost in the browser at a given entry rate: headless
Debian chromium against a real uvicorn, entries published at ``--rate``
a second for ``--seconds``; every ``--every`` seconds the CPU time and the
resident memory of chromium's processes (from /proc) and what the page
received.

    python benchmarks/live_page_cost.py [--rate 1000] [--seconds 600] [--every 30]

Needs selenium, chromium and chromium-driver (as the browser tests).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fastopslog import OpsLogBroadcaster
from test_asgi_browser import TOKEN, publish, start

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def usage(pids: list[int]) -> tuple[float, float]:
    """CPU seconds and resident MiB of these processes."""
    cpu = rss = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
        except (OSError, IndexError):
            continue
    return cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--every", type=int, default=30)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,900"):
        options.add_argument(argument)
    service = Service(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    ops = OpsLogBroadcaster(history_cap=1000)
    stop = threading.Event()

    def publisher() -> None:
        sent, began = 0, time.monotonic()
        while not stop.is_set():
            publish(ops, args.rate // 100, start=sent)
            sent += args.rate // 100
            time.sleep(max(0.0, began + sent / args.rate - time.monotonic()))

    try:
        with start(ops, buf_size=4096) as server:
            driver.get(f"{server.url}/admin/ops/logs/#token={TOKEN}")
            time.sleep(2)
            pids = descendants(service.process.pid)
            thread = threading.Thread(target=publisher, daemon=True)
            thread.start()
            began = time.monotonic()
            cpu0, _ = usage(pids)
            last_cpu, last_t = cpu0, began
            print(f"rate {args.rate}/s; chromium processes: {len(pids)}")
            print("  s   cpu% (interval)  rss MiB  received  dropped  shown  js heap MiB  state")
            while time.monotonic() - began < args.seconds:
                time.sleep(args.every)
                now = time.monotonic()
                cpu, rss = usage(descendants(service.process.pid))
                page = driver.execute_script(
                    "return [document.getElementById('received').textContent,"
                    " document.getElementById('dropped').textContent,"
                    " document.getElementById('shown').textContent,"
                    " performance.memory ? performance.memory.usedJSHeapSize / 1048576 : -1,"
                    " window.opslogState]"
                )
                print(f"{now - began:4.0f}  {100 * (cpu - last_cpu) / (now - last_t):6.1f}"
                      f"          {rss:7.0f}  {page[0]:>8}  {page[1]:>7}  {page[2]:>5}"
                      f"  {page[3]:11.1f}  {page[4]}", flush=True)
                last_cpu, last_t = cpu, now
            total = time.monotonic() - began
            cpu, rss = usage(descendants(service.process.pid))
            print(f"over {total:.0f} s: chromium used {100 * (cpu - cpu0) / total:.1f} % of one core "
                  f"on average; {rss:.0f} MiB resident at the end; published {ops.stats().published}")
            stop.set()
            thread.join(10)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
