"""Errors raised by kgmm. Every user-facing failure is a :class:`KGMMError`."""

from __future__ import annotations


class KGMMError(Exception):
    """Base class of every error kgmm raises on purpose."""


class GraphFormatError(KGMMError, ValueError):
    """A knowledge-graph file is malformed (the message names file and line)."""


class UnknownEntityError(KGMMError, KeyError):
    """An entity or relation name is not in the graph (the message lists close matches)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(KGMMError, ValueError):
    """A sample, manifest or media file cannot be used (the message names it)."""


class ConfigError(KGMMError, ValueError):
    """A configuration value is missing or invalid."""


class CheckpointError(KGMMError, OSError):
    """A checkpoint folder is missing files or holds something kgmm cannot load safely."""
