"""Placeholder: filled by its issue."""


def register(subparsers) -> None:
    pass
