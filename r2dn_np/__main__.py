"""``python -m r2dn_np`` runs the ``r2dn`` command line."""

import sys

from .cli import main

sys.exit(main())
