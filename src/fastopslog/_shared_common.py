"""What both implementations share about the shared-memory log: its name
rule, its geometry limits and checks, and ``unlink_shared``.

docs/shared.md describes the log; the compiled core implements it
(``_shared_c.pxi``), the pure implementation refuses it (``_shared_py.py``).
"""

from __future__ import annotations

import re
from typing import Final

# The segment's name in the system's shared-memory namespace (/dev/shm on
# Linux) is this prefix followed by the user's name.
SHM_PREFIX: Final = "/fastopslog."
# Names: letters, digits, '.', '_' and '-', starting with a letter or digit,
# so that a name can never be a path, hidden, or an option.
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_NAME = 100

DEFAULT_SHARED_HISTORY_CAP: Final = 10_000
DEFAULT_RECORD_SIZE: Final = 1024
MIN_RECORD_SIZE: Final = 256
MAX_RECORD_SIZE: Final = 65536
# A ring is at most this many records and this many bytes of records.
MAX_SHARED_CAPACITY: Final = 1 << 24
MAX_SEGMENT_BYTES: Final = 1 << 32
# How long a reader waits for a claimed record before skipping it as the
# work of a writer that died mid-record.
SKIP_AFTER_S: Final = 0.1
# How long attaching waits for the creator to finish initialising the header.
ATTACH_WAIT_S: Final = 2.0


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"bad shared log name {name!r}: 1 to {MAX_NAME} characters of letters, digits,"
            " '.', '_' and '-', starting with a letter or digit"
        )
    return name


def check_geometry(history_cap: object, record_size: object) -> tuple[int, int]:
    """``(history_cap, record_size)`` as given, checked; ``None`` stays 0
    (meaning: whatever the existing ring has, or the default for a new one)."""
    values = []
    for label, value, low, high in (
        ("history_cap", history_cap, 1, MAX_SHARED_CAPACITY),
        ("record_size", record_size, MIN_RECORD_SIZE, MAX_RECORD_SIZE),
    ):
        if value is None:
            values.append(0)
            continue
        if type(value) is not int:
            raise TypeError(f"{label} must be an int or None, not {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"{label} must be between {low} and {high}, not {value}")
        values.append(value)
    cap, size = values
    if size % 64:
        raise ValueError(f"record_size must be a multiple of 64, not {size}")
    if cap * (size or DEFAULT_RECORD_SIZE) > MAX_SEGMENT_BYTES:
        raise ValueError(
            f"history_cap * record_size must be at most {MAX_SEGMENT_BYTES} bytes,"
            f" not {cap} * {size or DEFAULT_RECORD_SIZE}"
        )
    return cap, size


def unlink_shared(name: str) -> bool:
    """Remove the shared log ``name``; whether there was one. Processes that
    have it open keep their mapping until they close it; the next open
    creates a new, empty log."""
    import _posixshmem  # type: ignore[import-not-found]  # CPython's shm_unlink, as multiprocessing uses

    try:
        _posixshmem.shm_unlink(SHM_PREFIX + check_name(name))
    except FileNotFoundError:
        return False
    return True
