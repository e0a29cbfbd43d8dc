"""Subcommands of the ``mfrec`` CLI, one module per area, each with ``register(subparsers)``."""
