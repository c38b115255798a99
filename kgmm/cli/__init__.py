"""The ``kgmm`` command."""
