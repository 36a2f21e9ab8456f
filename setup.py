"""The compiled parts, both optional (the install goes on without a C compiler):

- ``sparse_probe.solvers._gram_cd``: the Gram coordinate-descent kernel of the proximal Newton
  solver; without it ``sparse_probe.solvers.gram_cd`` falls back to scikit-learn's kernel,
  then to a numpy loop;
- ``sparse_probe.solvers._softmax_ce``: the cross-entropy rows of every solver's line search;
  without it ``sparse_probe.solvers.fused_ce`` falls back to torch's operations;
- ``sparse_probe.solvers._centering``: the penalty-optimal shift of each weight column that the
  solvers take every iteration; without it ``sparse_probe.solvers.centering`` uses numpy.

Everything else is declared in pyproject.toml.
"""

import sys

from setuptools import Extension, setup

# -fopenmp-simd: the `omp simd` reductions only (no OpenMP runtime); GCC and Clang
SIMD = [] if sys.platform == "win32" else ["-fopenmp-simd"]
# the buffer getter both extensions include
BUFFERS = "sparse_probe/solvers/_buffers.h"

setup(ext_modules=[
    Extension("sparse_probe.solvers._gram_cd", ["sparse_probe/solvers/_gram_cd.c"],
              extra_compile_args=["-O3"], optional=True),
    Extension("sparse_probe.solvers._softmax_ce", ["sparse_probe/solvers/_softmax_ce.c"],
              depends=[BUFFERS], extra_compile_args=["-O3", *SIMD], optional=True),
    # no fused multiply-adds: the same roundings as the numpy steps it replaces
    Extension("sparse_probe.solvers._centering", ["sparse_probe/solvers/_centering.c"],
              depends=[BUFFERS], extra_compile_args=["-O2", *([] if sys.platform == "win32" else ["-ffp-contract=off"])],
              optional=True),
])
