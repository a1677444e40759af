"""Configuration errors that name the place in the config."""

from __future__ import annotations


class ConfigError(ValueError):
    """A plugin config or spec that cannot be compiled; the message names the place."""

    def __init__(self, place: str, problem: str) -> None:
        self.place = place
        self.problem = problem
        super().__init__(f"{place}: {problem}" if place else problem)
