"""Interrupts and processes, each in a fresh interpreter.

- Ctrl-C: the main thread blocked in ``get()`` (or blocking iteration) with
  no timeout gets ``KeyboardInterrupt`` when SIGINT arrives, and the
  subscription still works afterwards.
- fork (gunicorn's ``--preload``): a broadcaster made before ``os.fork()``
  while another thread is busy with it (publishing; or taking filtered
  snapshots of a history long enough for the compiled core to scan it
  without the GIL) works in the child: publish, subscribe, get from another
  thread, snapshot and stats. The parent forks several times, as a
  pre-forking server does, so that the fork lands in the middle of the busy
  thread's calls; a child that hangs dumps its stack and exits 1.

Timeouts here are only against hangs: nothing asserts how long anything took.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HANG = 120.0  # seconds before a script counts as hung

INTERRUPTED = 42  # the exit status that proves KeyboardInterrupt reached the reader

SIGINT_SCRIPT = r"""
import importlib, os, signal, sys, threading, time

mod = importlib.import_module(sys.argv[1])
style = sys.argv[2]
b = mod.OpsLogBroadcaster()
sub = b.subscribe()


def interrupt():
    time.sleep(0.2)  # lets the main thread park first; the outcome does not depend on it
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=interrupt, daemon=True).start()
try:
    if style == "get":
        got = sub.get()
    else:
        got = next(iter(sub))
except KeyboardInterrupt:
    # The interrupted read left nothing behind: the subscription still works.
    entry = mod.OpsLogEntry(status=200)
    b.publish(entry)
    assert sub.get(timeout=10) is entry
    assert b.stats() == (1, 0, 1), b.stats()
    sys.exit(%d)
sys.exit(f"the read returned {got!r} instead of being interrupted")
""" % INTERRUPTED


@pytest.mark.parametrize("style", ["get", "iter"])
def test_ctrl_c_interrupts_a_blocked_reader(impl, style):
    proc = _run(SIGINT_SCRIPT, impl.__name__, style)
    assert proc.returncode == INTERRUPTED, _output(proc)


FORK_SCRIPT = r"""
import faulthandler, importlib, os, sys, threading, time, traceback, warnings

# Python 3.12+ warns about forking a process with threads: that is the point.
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")

mod = importlib.import_module(sys.argv[1])
activity = sys.argv[2]
FORKS = 20
CHILD_HANG = 20.0
HISTORY = 60_000  # above the compiled core's GIL-free snapshot threshold (50,000)

b = mod.OpsLogBroadcaster(HISTORY)
for i in range(HISTORY):
    b.publish(mod.OpsLogEntry(status=200 + i % 2, model="parent"))
# Never read: each publish fans out and drops, so a busy publisher spends
# most of its time inside publish.
stalled = [b.subscribe(buf_size=1) for _ in range(50)]
odd = mod.OpsLogFilter(min_status=201)
calls = 0


def busy():
    global calls
    while True:
        if activity == "publish":
            b.publish(mod.OpsLogEntry(status=200, model="parent"))
        else:
            b.snapshot(odd)
        calls += 1


def child():
    faulthandler.dump_traceback_later(CHILD_HANG, exit=True)
    before = b.stats()
    mine = mod.OpsLogFilter(model="child")
    sub = b.subscribe(mine)
    got = []
    reader = threading.Thread(target=lambda: got.append(sub.get(timeout=CHILD_HANG)))
    reader.start()
    entry = mod.OpsLogEntry(status=500, model="child")
    b.publish(entry)
    reader.join()
    assert got == [entry] and got[0] is entry, got
    assert b.snapshot()[-1] is entry
    assert b.snapshot(mine) == [entry]
    assert all(e.status >= 201 for e in b.snapshot(odd))
    after = b.stats()
    assert after.published == before.published + 1, (before, after)
    assert after.subscribers == before.subscribers + 1, (before, after)
    sub.unsubscribe()
    assert b.stats().subscribers == before.subscribers


threading.Thread(target=busy, daemon=True).start()
while calls < 100:
    time.sleep(0.01)
for n in range(FORKS):
    pid = os.fork()
    if pid == 0:
        try:
            child()
        except BaseException:
            traceback.print_exc()
            os._exit(2)
        os._exit(0)
    deadline = time.monotonic() + CHILD_HANG + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:  # even faulthandler could not end it
            os.kill(pid, 9)
            done, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        why = {1: "hung: its stack is above", 2: "failed: its traceback is above"}
        sys.exit(f"child {n + 1} of {FORKS} (forked while a thread ran {activity})"
                 f" exited {code}: {why.get(code, 'killed')}")
print(f"{FORKS} children ok")
"""


@pytest.mark.parametrize("activity", ["publish", "snapshot"])
def test_broadcaster_works_in_a_child_forked_while_another_thread_uses_it(impl, activity):
    proc = _run(FORK_SCRIPT, impl.__name__, activity)
    assert proc.returncode == 0, _output(proc)


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            timeout=HANG,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung for {HANG:.0f} s:\n{exc.stdout!r}\n{exc.stderr!r}", pytrace=False)


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
