"""The one compiled part: the Gram coordinate-descent kernel of the proximal Newton solver.

Everything else is declared in pyproject.toml. The extension is optional: where it cannot be
built (no C compiler), the install goes on and ``sparse_probe.solvers.gram_cd`` falls back to
scikit-learn's kernel, then to a numpy loop.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sparse_probe.solvers._gram_cd",
                             ["sparse_probe/solvers/_gram_cd.c"],
                             extra_compile_args=["-O3"], optional=True)])
