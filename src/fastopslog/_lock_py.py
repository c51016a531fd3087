"""Pure implementation: the one lock (see ``_opslog_py`` for its rules)."""

from __future__ import annotations

import os
import threading

_LOCK = threading.RLock()
# Fork (gunicorn --preload) only at a quiet moment: a child that inherited
# the lock held by a thread that does not exist there would deadlock, and
# one forked mid-publish would inherit half-updated state.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_LOCK.acquire, after_in_parent=_LOCK.release, after_in_child=_LOCK.release
    )
