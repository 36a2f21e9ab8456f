"""Solvers for the sparse head's objective (see :mod:`sparse_probe.objective`)."""
