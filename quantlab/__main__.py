"""``python -m quantlab`` is the same as the ``quantlab`` command."""

import sys

from quantlab.cli import main

sys.exit(main())
