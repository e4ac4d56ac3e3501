"""`python -m sage_local` is the `sage` command."""

import sys

from sage_local.cli import main

sys.exit(main())
