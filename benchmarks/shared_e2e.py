"""End to end with the shared log: the demo gateway under ``uvicorn
--workers 2``, driven by wrk, with the dashboard on ``python -m fastopslog
serve --shared`` (docs/shared.md, "serve").

    .venv/bin/python benchmarks/shared_e2e.py [--duration 10] [--connections 50]

1. One SSE reader on ``serve`` from seq 1 while wrk runs: does it receive
   every request, in strictly increasing seq, and does ``/stats`` agree
   with the count wrk reports?
2. The workers' throughput (wrk's requests/s) and their CPU per request
   (user + system of the worker processes, /proc) with 100 SSE readers of
   every entry on ``serve``, against none; and serve's CPU per request.

The app is the demo's (``make_app``, no admin routes: the workers serve no
dashboard) with its delays scaled to zero (``speed=0``), so wrk measures
the gateway and the log rather than the fake upstream's sleeps. Its random
outcomes (429, 502, 504, a crash: 500) are logged like the 200s. Every
server listens on 127.0.0.1 and is stopped by its PID. One run on whatever
else the machine is doing: quote it with its command, never assert it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from fastopslog import unlink_shared

PREFIX = "/admin/ops/logs"
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

APP = """
import logging
import os

from fastopslog import SharedOpsLogBroadcaster
from fastopslog._demo import _QuietDemoCrash, make_app

logging.getLogger("uvicorn.error").addFilter(_QuietDemoCrash())
ops = SharedOpsLogBroadcaster(os.environ["BENCH_LOG"], history_cap=1 << 17, record_size=512)
app = make_app(ops, "unused", speed=0.0, admin=False)
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-demo-alice-0000000000000001"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=sys.stderr)  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_ready(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, headers=headers, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} not up in {timeout} s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def published(base: str) -> int:
    n: int = httpx.get(base + PREFIX + "/stats", headers=AUTH, timeout=10).json()["published"]
    return n


class Reader:
    """An SSE client on a raw socket: reads ``/stream`` from seq 1 on; with
    ``parse`` it records every event id, otherwise it only drains bytes."""

    def __init__(self, port: int, parse: bool) -> None:
        self.port = port
        self.parse = parse
        self.seqs: list[int] = []
        self.bytes = 0
        self.ready = asyncio.Event()
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"GET {PREFIX}/stream?last_event_id=0&replay=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        tail = b""
        try:
            while chunk := await reader.read(1 << 16):
                self.bytes += len(chunk)
                if not self.ready.is_set() and b"event: ready" in tail + chunk:
                    self.ready.set()
                if self.parse:
                    lines = (tail + chunk).split(b"\n")
                    tail = lines.pop()
                    self.seqs.extend(int(line[4:]) for line in lines if line.startswith(b"id: "))
                elif not self.ready.is_set():
                    tail = chunk[-64:]
        finally:
            writer.close()


async def wrk(port: int, duration: float, connections: int, script: Path) -> tuple[int, float, str]:
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "-s", str(script),
        f"http://127.0.0.1:{port}/v1/chat/completions",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    count = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not count or not rate:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return int(count.group(1)), float(rate.group(1)), out


async def settle(base: str, readers: list[Reader], timeout: float = 60) -> int:
    """Wait until the log stops growing and the parsing reader has it all."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = published(base)
        if now == last and all(not r.parse or len(r.seqs) >= now for r in readers):
            return now
        last = now
    return last


async def main_async(args: argparse.Namespace, workdir: Path) -> None:
    name = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    (workdir / "bench_app.py").write_text(APP)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    gw_port, dash_port = free_port(), free_port()
    gateway = start(
        [sys.executable, "-m", "uvicorn", "bench_app:app", "--workers", "2", "--host", "127.0.0.1",
         "--port", str(gw_port), "--log-level", "warning", "--no-access-log"],
        workdir, {"BENCH_LOG": name},
    )  # fmt: skip
    dash = None
    try:
        wait_ready(f"http://127.0.0.1:{gw_port}/v1/models")
        dash = start(
            [sys.executable, "-m", "fastopslog", "serve", "--shared", name, "--port",
             str(dash_port), "--token", TOKEN],
            workdir, {},
        )  # fmt: skip
        dash_base = f"http://127.0.0.1:{dash_port}"
        wait_ready(dash_base + PREFIX + "/stats", AUTH)
        start_seq = published(dash_base)  # the readiness probe's /v1/models, if logged

        print(f"1. one SSE reader on serve, wrk -c{args.connections} for {args.duration:g} s")
        one = Reader(dash_port, parse=True)
        await asyncio.wait_for(one.ready.wait(), 10)
        count, rate, _ = await wrk(gw_port, args.duration, args.connections, script)
        total = await settle(dash_base, [one])
        seqs = one.seqs
        increasing = all(a < b for a, b in itertools.pairwise(seqs))
        during = total - start_seq
        print(f"   wrk: {count} requests, {rate:,.0f}/s; /stats published {total} "
              f"({during} during the run, {during - count:+d} against wrk)")  # fmt: skip
        print(f"   reader: {len(seqs)} entries, strictly increasing: {increasing}, "
              f"every seq 1..{total}: {seqs == list(range(1, total + 1))}")  # fmt: skip
        one.task.cancel()

        print(f"2. workers' throughput, wrk -c{args.connections} {args.duration:g} s, x{args.rounds}")
        workers = children(gateway.pid)
        rates: dict[str, list[float]] = {"none": [], "100 readers": []}
        cpu: dict[str, list[float]] = {"none": [], "100 readers": []}
        for _ in range(args.rounds):
            for label in rates:
                readers = [Reader(dash_port, parse=False) for _ in range(100 if label != "none" else 0)]
                for r in readers:
                    await asyncio.wait_for(r.ready.wait(), 30)
                before = cpu_seconds(workers), cpu_seconds([dash.pid])
                count, rate, _ = await wrk(gw_port, args.duration, args.connections, script)
                w_cpu = (cpu_seconds(workers) - before[0]) / count * 1e6
                s_cpu = (cpu_seconds([dash.pid]) - before[1]) / count * 1e6
                cpu[label].append(w_cpu)
                received = sum(r.bytes for r in readers)
                for r in readers:
                    r.task.cancel()
                await asyncio.sleep(1)
                rates[label].append(rate)
                print(f"   {label}: {rate:,.0f} requests/s; CPU per request: workers "
                      f"{w_cpu:.0f} µs, serve {s_cpu:.0f} µs"
                      + (f"; readers received {received / 1e6:,.0f} MB" if readers else ""))  # fmt: skip
        med = {label: sorted(v)[len(v) // 2] for label, v in rates.items()}
        mcpu = {label: sorted(v)[len(v) // 2] for label, v in cpu.items()}
        print(f"   median: none {med['none']:,.0f}/s, 100 readers {med['100 readers']:,.0f}/s "
              f"({med['100 readers'] / med['none'] - 1:+.1%}); workers' CPU per request "
              f"{mcpu['none']:.0f} vs {mcpu['100 readers']:.0f} µs "
              f"({mcpu['100 readers'] / mcpu['none'] - 1:+.1%})")  # fmt: skip
    finally:
        if dash is not None:
            stop(dash)
        stop(gateway)
        unlink_shared(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="wrk seconds (default 10)")
    parser.add_argument(
        "--connections", type=int, default=400,
        help="wrk connections (default 400: under uvicorn --workers each response waits ~40 ms "
        "for a delayed ACK, so fewer connections leave the workers idle)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="rounds of figure 2 (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    main()

