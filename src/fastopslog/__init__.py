"""fastopslog: the in-memory pub/sub at the centre of a gateway's live ops log.

``import fastopslog`` gives the compiled core when it is installed and the
pure implementation when it is not (an install built with
``FASTOPSLOG_NO_EXTENSIONS=1``, or not on CPython); a core that is installed
but does not import raises. ``FASTOPSLOG_NO_EXTENSIONS=1`` at run time forces
the pure one. ``USE_EXTENSIONS`` tells which is in use.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ._common import OpsLogStats, SubscriptionClosed

__version__ = "0.1.0"

__all__ = (
    "USE_EXTENSIONS",
    "OpsLogBroadcaster",
    "OpsLogEntry",
    "OpsLogFilter",
    "OpsLogStats",
    "OpsLogSubscription",
    "SharedOpsLogBroadcaster",
    "SubscriptionClosed",
    "unlink_shared",
)

NO_EXTENSIONS = bool(os.environ.get("FASTOPSLOG_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)

if TYPE_CHECKING:
    from ._opslog_py import (
        OpsLogBroadcaster,
        OpsLogEntry,
        OpsLogFilter,
        OpsLogSubscription,
        SharedOpsLogBroadcaster,
        unlink_shared,
    )

    USE_EXTENSIONS: bool
else:
    USE_EXTENSIONS = False
    if not NO_EXTENSIONS:
        try:
            from ._opslog_c import (
                OpsLogBroadcaster,
                OpsLogEntry,
                OpsLogFilter,
                OpsLogSubscription,
                SharedOpsLogBroadcaster,
                unlink_shared,
            )
        except ModuleNotFoundError as exc:
            # Only a core that is not there (a pure install) means the pure
            # implementation; one that is there but fails to import raises.
            if exc.name != f"{__name__}._opslog_c":
                raise
        else:
            USE_EXTENSIONS = True
    if not USE_EXTENSIONS:
        from ._opslog_py import (
            OpsLogBroadcaster,
            OpsLogEntry,
            OpsLogFilter,
            OpsLogSubscription,
            SharedOpsLogBroadcaster,
            unlink_shared,
        )
