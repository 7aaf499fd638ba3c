"""One module per CLI sub-command; each exposes ``add_arguments(parser)`` and
``run(args) -> int``. Imported lazily by :mod:`quantlab.cli` so ``quantlab --help`` stays fast."""
