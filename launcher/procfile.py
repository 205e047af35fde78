"""honcho with a platform's stop grace: processes get GRACE_SECONDS between SIGTERM and SIGKILL.

honcho hard-codes 5 s (honcho.manager.KILL_WAIT, no option), less than a worker needs to finish
its in-flight deliveries (up to APEX_REQUEST_TIMEOUT) and hand the queued ones back; Heroku
allows 30 s. Arguments are honcho's own: `python -m launcher.procfile start -f Procfile …`.
"""

from __future__ import annotations

import honcho.manager
from honcho.command import main

GRACE_SECONDS = 30

if __name__ == "__main__":
    honcho.manager.KILL_WAIT = GRACE_SECONDS  # read by the manager's loop when it stops
    main()
