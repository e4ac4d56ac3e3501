"""`python -m sage_cli` is the `sage` command."""

import sys

from sage_cli.main import main

sys.exit(main())
