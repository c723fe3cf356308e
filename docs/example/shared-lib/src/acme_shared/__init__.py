"""Shared helpers: what several functions of one team import."""


def greeting(name: str) -> str:
    return f"Hello, {name}!"
