"""`python -m sage_engine`: see `python -m sage_engine --help`."""

import sys

from sage_engine.server import main

sys.exit(main())
