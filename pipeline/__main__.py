"""`python -m edgesmith ...` is the `edgesmith` command (also what launchers can run: `torchrun -m edgesmith run ...`)."""

import sys

from .cli import main

sys.exit(main())
