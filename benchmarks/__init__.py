"""mfrec's benchmark scripts (not part of the installed package).

Run each from the repository root as a module, e.g. ``python -m benchmarks.quality``; see
``benchmarks/README.md``.
"""
