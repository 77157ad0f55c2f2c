"""`python -m gistscan`: the command line."""

import sys

try:
    from gistscan.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the command line: no traceback
    print("gistscan: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
