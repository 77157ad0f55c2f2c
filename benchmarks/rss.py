"""`python -m benchmarks.rss OUT CMD...`: run CMD, then write its peak RSS (bytes) to OUT.

Why a helper: Linux records the memory high-water mark of the image a child replaces when
it execs (`exec_mmap`), and a child forked or vforked from the benchmark process (hundreds
of MB after the scanner section) would report that. Started from this small process, CMD's
`ru_maxrss` is its own (or this helper's few MB, whichever is larger). CMD's stdout and
stderr are inherited; its exit status is this helper's.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    out, *command = argv
    pid = os.posix_spawnp(command[0], command, os.environ)
    _pid, status, usage = os.wait4(pid, 0)
    with open(out, "w") as f:
        f.write(f"{usage.ru_maxrss * 1024}\n")  # Linux reports KiB
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
