"""`python -m sage_finetune`: see `sage_finetune.cli`."""

from sage_finetune.cli import main

raise SystemExit(main())
