"""The soak tool: a short run of each implementation must pass, and its
checks must be able to fail.

The short run is ``python -m fastopslog soak --seconds 3`` in a subprocess,
as a user runs it; the checks are fed deliberately broken observations, and
the whole harness is run once against a broadcaster that silently loses one
delivery.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import ModuleType, SimpleNamespace
from typing import cast

import pytest

from fastopslog import OpsLogStats, _opslog_py, _soak

HANG = 400.0  # against a hang only: the soak's own watchdog fires after 3 s + 180 s


def test_soak_passes(implementation, tmp_path):
    name = implementation.name
    figures_path = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fastopslog", "soak", "--seconds", "3", "--impl", name,
         "--json", str(figures_path)],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    output = f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, output
    assert proc.stdout.rstrip().splitlines()[-1] == "PASS", output
    figures = json.loads(figures_path.read_text())
    assert figures["impl"] == name and figures["violations"] == []
    assert figures["publishes"] > 0
    assert figures["accounting_records"] > len(_soak.MONITORS)
    assert sum(figures["leaks"].values()) == 0


# --- the checks fail on broken observations -----------------------------------------------


def E(seq, **fields):
    return SimpleNamespace(seq=seq, **fields)


def test_accounting_check_catches_a_wrong_count():
    good = _soak.Track("good", expected=10, received=7, dropped=3, done=True)
    lost = _soak.Track("lost one", expected=10, received=6, dropped=3, done=True)
    extra = _soak.Track("one too many", expected=10, received=8, dropped=3, done=True)
    stuck = _soak.Track("reader stuck", expected=0, done=False)
    assert _soak.check_accounting([good]) == []
    problems = _soak.check_accounting([good, lost, extra, stuck])
    assert [p.split(":")[0] for p in problems] == ["lost one", "one too many", "reader stuck"]


def test_stats_check_catches_counters_going_back():
    stats = OpsLogStats
    assert _soak.check_stats_step(stats(5, 2, 1), stats(5, 2, 0)) == []
    assert _soak.check_stats_step(stats(5, 2, 1), stats(4, 2, 1))
    assert _soak.check_stats_step(stats(5, 2, 1), stats(6, 1, 1))
    assert _soak.check_stats_step(stats(5, 2, 1), stats(6, 2, -1))


def test_snapshot_check_catches_gaps_overfill_and_staleness():
    assert _soak.check_snapshot([E(s) for s in range(3, 7)], 4, 5) == []
    assert _soak.check_snapshot([E(s) for s in range(1, 3)], 4, 2) == []
    assert _soak.check_snapshot([], 4, 0) == []
    assert _soak.check_snapshot([], 4, 1)  # history lost everything
    assert _soak.check_snapshot([E(3), E(5), E(6)], 4, 5)  # a gap
    assert _soak.check_snapshot([E(4), E(3), E(5), E(6)], 4, 5)  # out of order
    assert _soak.check_snapshot([E(s) for s in range(2, 7)], 4, 5)  # more than history_cap
    assert _soak.check_snapshot([E(s) for s in range(4, 7)], 4, 5)  # fewer than it should keep
    assert _soak.check_snapshot([E(s) for s in range(1, 5)], 4, 5)  # older than stats said


def test_filtered_snapshot_check_catches_strays():
    flt = _opslog_py.OpsLogFilter(min_status=500)

    def entry(seq, status):
        return E(seq, status=status, model="", account_id=1, group_id=1, latency_ms=1)

    assert _soak.check_filtered([entry(2, 500), entry(9, 503)], flt, 2) == []
    assert _soak.check_filtered([entry(2, 500), entry(3, 200)], flt, 0)  # does not match
    assert _soak.check_filtered([entry(9, 500), entry(2, 500)], flt, 0)  # out of order
    assert _soak.check_filtered([entry(2, 500), entry(9, 503)], flt, 1)  # above max_entries


def test_history_check_catches_a_wrong_tail():
    # Two publishers made 3 and 4 calls; history_cap 4; publish order by seq.
    order = [(0, 0), (1, 0), (1, 1), (0, 1), (1, 2), (0, 2), (1, 3)]
    entries = [E(s + 1, api_key_id=p + 1, user_id=i) for s, (p, i) in enumerate(order)]
    assert _soak.check_history(entries[-4:], 7, 4, [3, 4]) == []
    assert _soak.check_history(entries[-3:], 7, 4, [3, 4])  # one short
    swapped = entries[-4:]
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert _soak.check_history(swapped, 7, 4, [3, 4])  # out of seq order
    wrong = entries[-4:]
    wrong[0] = E(4, api_key_id=1, user_id=0)  # publisher 0's entry, but not its latest
    assert _soak.check_history(wrong, 7, 4, [3, 4])


class LossyBroadcaster(_opslog_py.OpsLogBroadcaster):
    """The pure broadcaster, losing one delivery without counting it: one
    fan-out to the subscriptions without a routing key, among them the
    soak's unfiltered whole-run one, which matches everything.

    The loss comes early (the 100th such fan-out) so that even a one-second
    run under AddressSanitizer, a few thousand publishes, reaches it."""

    LOSE = 100

    __slots__ = ("_deliveries",)

    def __init__(self, history_cap: int) -> None:
        super().__init__(history_cap)
        self._deliveries = 0

    def _fan_out(self, entry, groups, wakers):
        if self._routes is not None and groups is self._routes.every:
            self._deliveries += 1
            if self._deliveries == self.LOSE:
                return wakers
        return super()._fan_out(entry, groups, wakers)


def test_soak_fails_on_a_lost_delivery():
    broken = cast(ModuleType, SimpleNamespace(
        OpsLogBroadcaster=LossyBroadcaster,
        OpsLogEntry=_opslog_py.OpsLogEntry,
        OpsLogFilter=_opslog_py.OpsLogFilter,
    ))
    figures = _soak.Soak(broken, 1.0).run(lambda line: None)
    assert any("matched while live" in v for v in figures["violations"]), figures["violations"]
    report = _soak.report("pure", "lossy", 1.0, figures)
    assert report.splitlines()[-1].startswith("FAIL")


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf"])
def test_soak_refuses_a_senseless_duration(seconds, capsys):
    from fastopslog.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["soak", "--seconds", seconds])
    assert exc.value.code == 2
    assert "--seconds" in capsys.readouterr().err
