"""`python -m dedup`: the dedup command line."""

from __future__ import annotations

import os
import sys
import threading

from dedup.cli import main

code = main()
# The process ends here: the interpreter's teardown (modules, the objects main froze, arenas)
# only frees memory the exit frees anyway, 3-4 ms of a 0.5 s /usr/lib run with one core idle.
# The output is flushed first; a flush that fails, or a thread still alive, ends the usual way.
try:
    sys.stdout.flush()
    sys.stderr.flush()
except OSError:
    raise SystemExit(code) from None
if threading.active_count() == 1:
    os._exit(code)
raise SystemExit(code)
