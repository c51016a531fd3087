"""Build the compiled core, unless FASTOPSLOG_NO_EXTENSIONS asks for a pure
install. A failed compile fails the install: a silent fallback would hide
a broken build.

FASTOPSLOG_DEBUG_BUILD=1 compiles with assertions, no optimisation, debug
symbols and Cython line tracing, for coverage and sanitizer runs.
"""

import glob
import os
import sys

from setuptools import Extension, setup

NO_EXTENSIONS = bool(os.environ.get("FASTOPSLOG_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)
DEBUG_BUILD = bool(os.environ.get("FASTOPSLOG_DEBUG_BUILD"))

if NO_EXTENSIONS:
    ext_modules = []
else:
    from Cython.Build import cythonize

    directives = {"language_level": "3", "embedsignature": True}
    macros = []
    if DEBUG_BUILD:
        directives.update(linetrace=True, profile=False)
        macros = [("CYTHON_TRACE_NOGIL", "1")]
        extra_compile_args = ["-O0", "-g3", "-UNDEBUG"]
    else:
        extra_compile_args = ["-O3"]
    ext_modules = cythonize(
        [
            Extension(
                "fastopslog._opslog_c",
                ["src/fastopslog/_opslog_c.pyx"],
                # The parts it includes, so that editing one rebuilds it.
                depends=sorted(glob.glob("src/fastopslog/_*_c.pxi")) + ["src/fastopslog/_shm.h"],
                define_macros=macros,
                extra_compile_args=extra_compile_args,
            )
        ],
        compiler_directives=directives,
    )

setup(ext_modules=ext_modules)
