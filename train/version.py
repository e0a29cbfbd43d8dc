"""mfrec's version: one home that every package (train, serve, the container glue) imports."""

__version__ = "0.1.0"
