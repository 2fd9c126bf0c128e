"""Whether a process id names a running process, for files and records that carry their writer's pid."""
from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. Another user's process counts as alive: what it wrote is not ours
    to judge."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
