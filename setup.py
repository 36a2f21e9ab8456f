"""The compiled parts, all optional (the install goes on without a C compiler):

- ``sparse_probe.solvers._gram_cd``: the Gram coordinate-descent kernel of the proximal Newton
  solver; without it ``sparse_probe.solvers.gram_cd`` falls back to scikit-learn's kernel,
  then to a numpy loop;
- ``sparse_probe.solvers._data_cd``: the proximal Newton solver's model solves in data space
  (n ≪ d working sets); without it the solver forms the Hessian (``sparse_probe.solvers.data_cd``);
- ``sparse_probe.solvers._softmax_ce``: the cross-entropy rows of every solver's line search;
  without it ``sparse_probe.solvers.fused_ce`` falls back to torch's operations. Built with
  OpenMP where the compiler has it (its row blocks then run on the OpenMP team torch's own
  products use: the module is imported after torch, whose ``libgomp.so.1`` it binds to), else
  without (the blocks then go to Python threads);
- ``sparse_probe.solvers._centering``: the penalty-optimal shift of each weight column that the
  solvers take every iteration; without it ``sparse_probe.solvers.centering`` uses numpy;
- ``sparse_probe.solvers._column_sums``: a fit's statistics' pass (column means and spreads,
  class sums) in one read of the rows; without it ``sparse_probe.fit_common`` sums with torch.

Everything else is declared in pyproject.toml.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -fopenmp-simd: the `omp simd` reductions only (no OpenMP runtime); GCC and Clang
SIMD = [] if sys.platform == "win32" else ["-fopenmp-simd"]
# the buffer getter both extensions include
BUFFERS = "sparse_probe/solvers/_buffers.h"

# extensions built with OpenMP where the compiler takes it (GCC: libgomp, torch's runtime too)
OPENMP = {"sparse_probe.solvers._softmax_ce"}


def openmp_flags(name: str) -> list[str]:
    """The OpenMP compile and link flags tried for extension ``name``: ``-fopenmp``, or the
    words of ``SPARSE_PROBE_OPENMP_FLAGS`` where set (empty: build without OpenMP; e.g.
    ``-Xpreprocessor -fopenmp -lomp`` for Apple's clang with Homebrew's libomp)."""
    if name not in OPENMP or sys.platform == "win32":
        return []
    given = os.environ.get("SPARSE_PROBE_OPENMP_FLAGS")
    return ["-fopenmp"] if given is None else given.split()


class BuildExt(build_ext):
    """``build_ext`` that tries :func:`openmp_flags` first and builds without them where the
    compiler or linker refuses them (Apple's clang without libomp, MSVC)."""

    def build_extension(self, ext):
        flags = openmp_flags(ext.name)
        if not flags:
            return super().build_extension(ext)
        plain = list(ext.extra_compile_args), list(ext.extra_link_args)
        ext.extra_compile_args, ext.extra_link_args = plain[0] + flags, plain[1] + flags
        try:
            return super().build_extension(ext)
        except Exception as err:  # CompileError, LinkError: the same build without OpenMP
            print(f"note: {ext.name} without OpenMP ({type(err).__name__}: {err})")
            ext.extra_compile_args, ext.extra_link_args = plain
            return super().build_extension(ext)


setup(cmdclass={"build_ext": BuildExt}, ext_modules=[
    Extension("sparse_probe.solvers._gram_cd", ["sparse_probe/solvers/_gram_cd.c"],
              extra_compile_args=["-O3"], optional=True),
    Extension("sparse_probe.solvers._data_cd", ["sparse_probe/solvers/_data_cd.c"],
              depends=[BUFFERS], extra_compile_args=["-O3", *SIMD], optional=True),
    Extension("sparse_probe.solvers._softmax_ce", ["sparse_probe/solvers/_softmax_ce.c"],
              depends=[BUFFERS], extra_compile_args=["-O3", *SIMD], optional=True),
    Extension("sparse_probe.solvers._column_sums", ["sparse_probe/solvers/_column_sums.c"],
              depends=[BUFFERS], extra_compile_args=["-O3"], optional=True),
    # no fused multiply-adds: the same roundings as the numpy steps it replaces
    Extension("sparse_probe.solvers._centering", ["sparse_probe/solvers/_centering.c"],
              depends=[BUFFERS], extra_compile_args=["-O2", *([] if sys.platform == "win32" else ["-ffp-contract=off"])],
              optional=True),
])
