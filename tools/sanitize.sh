#!/usr/bin/env bash
# Memory and undefined-behaviour checks of the compiled core, one command each:
#
#   tools/sanitize.sh asan      [PYTEST_ARGS...]   AddressSanitizer + UBSan
#   tools/sanitize.sh valgrind  [PYTEST_ARGS...]   valgrind memcheck
#
# Each copies the working tree (without builds, caches and venvs) to
# $SANITIZE_ROOT/<mode>/repo (default /tmp/fastopslog-san), builds
# the core there with FASTOPSLOG_DEBUG_BUILD=1 (-O0 -g3 -UNDEBUG: C asserts
# on, CPython's too; its -O0 comes after, so wins over, the -O1 in CFLAGS)
# into a venv of its own, and never touches the checkout's in-place build.
# Each takes about 4 minutes on 2 cores.
#
# asan: the core built with -fsanitize=address,undefined; python runs with
#   libasan preloaded (the interpreter itself is not instrumented),
#   PYTHONMALLOC=malloc (so that ASan sees every object), leak detection off
#   (CPython does not free everything at exit) and UBSan halting on the
#   first report. Runs the whole test suite (pytest tests -x; PYTEST_ARGS
#   replace nothing, they are added), then `python -m fastopslog soak
#   --seconds $SOAK_SECONDS --impl c` (default 20), then
#   tools/sanitize_smoke.py.
# valgrind: memcheck with CPython's suppressions (Debian's python3 package
#   ships them as /usr/lib/valgrind/python3.supp) plus tools/valgrind-python.supp,
#   PYTHONMALLOC=malloc, definite leaks counted as errors. Runs
#   tools/sanitize_smoke.py and a focused subset of the tests against the
#   compiled core ($VALGRIND_TESTS; PYTEST_ARGS are added to it).
#
# Exit status: 0 when every run is clean; the failing run's status otherwise
# (valgrind errors and definite leaks exit 99). Needs gcc (12+), valgrind,
# and a CPython 3.11+ with venv and headers ($PYTHON; default python3, and
# /usr/bin/python3 for valgrind); packages come from pip's configured index.
set -euo pipefail

MODE="${1:-}"
case "$MODE" in
    asan | valgrind) shift ;;
    *)
        sed -n '2,6p' "$0" >&2
        exit 2
        ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$MODE" = valgrind ] && [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then
    # Debian's python3 runs clean under memcheck. Some other builds do not
    # (pyenv's 3.11.7 reads an uninitialised digit of a zero-size int in
    # int.from_bytes at startup, which taints small ints everywhere, so
    # every Py_INCREF of one is reported, in our frames too). It needs the
    # python3-venv and python3-dev packages.
    PYTHON=/usr/bin/python3
fi
PYTHON="${PYTHON:-python3}"
ROOT="${SANITIZE_ROOT:-/tmp/fastopslog-san}/$MODE"
SOAK_SECONDS="${SOAK_SECONDS:-20}"
VALGRIND_TESTS="${VALGRIND_TESTS:-tests/test_entry.py tests/test_filter.py tests/test_broadcaster.py tests/test_reading.py tests/test_gil_free.py tests/test_hostile_input.py::test_every_argument_every_value}"
START=$SECONDS

step() { printf '\n=== [%s +%ds] %s\n' "$MODE" $((SECONDS - START)) "$*"; }

copy_tree() {
    step "copying $REPO to $ROOT/repo"
    rm -rf "$ROOT/repo"
    mkdir -p "$ROOT/repo"
    # The working tree as it is (committed or not), minus builds, caches
    # and venvs. Not `git ls-files`: it would drop untracked files that
    # .gitignore matches by accident (such as the admin page's *.html).
    tar -C "$REPO" --exclude=./.git --exclude='./.venv*' --exclude=./build --exclude=./dist \
        --exclude='*.so' --exclude=./src/fastopslog/_opslog_c.c --exclude=__pycache__ \
        --exclude=.hypothesis --exclude=.pytest_cache --exclude=.benchmarks \
        --exclude='*.egg-info' -cf - . | tar -C "$ROOT/repo" -xf -
}

make_venv() {
    local base
    base="$(command -v "$PYTHON")"
    if [ ! -x "$ROOT/venv/bin/python" ] || [ "$(cat "$ROOT/venv/.base" 2>/dev/null)" != "$base" ]; then
        step "creating $ROOT/venv from $base"
        rm -rf "$ROOT/venv"
        "$PYTHON" -m venv "$ROOT/venv"
        echo "$base" >"$ROOT/venv/.base"
    fi
    step "installing build and test requirements"
    "$ROOT/venv/bin/python" -m pip install -q "Cython>=3.1" "setuptools>=77" wheel
    # The test extras, without building the package: the core is built below.
    "$ROOT/venv/bin/python" - "$ROOT/repo/pyproject.toml" >"$ROOT/requirements.txt" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["test"]))
EOF
    "$ROOT/venv/bin/python" -m pip install -q -r "$ROOT/requirements.txt"
}

build_core() {
    step "building the core: CFLAGS=$CFLAGS"
    # --no-build-isolation: the flags and the venv's Cython are used as is.
    (cd "$ROOT/repo" && FASTOPSLOG_DEBUG_BUILD=1 CFLAGS="$CFLAGS" LDFLAGS="$LDFLAGS" \
        "$ROOT/venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .)
    local so
    so="$(ls "$ROOT"/repo/src/fastopslog/_opslog_c*.so)"
    echo "built $so"
    if [ "$MODE" = asan ] && ! nm -D "$so" | grep -q __asan_report; then
        echo "error: $so is not instrumented by ASan" >&2
        exit 3
    fi
}

run() {
    # Runs "$@", reporting its time; the script stops at the first failure.
    local t0=$SECONDS status=0
    "$@" || status=$?
    printf '=== [%s] exit %d after %ds: %s\n' "$MODE" "$status" $((SECONDS - t0)) "$*"
    if [ "$status" -ne 0 ]; then
        printf '=== [%s] FAILED after %ds in total\n' "$MODE" $((SECONDS - START))
        exit "$status"
    fi
}

copy_tree
make_venv
PY="$ROOT/venv/bin/python"
export PYTHONFAULTHANDLER=1
cd "$ROOT/repo"

if [ "$MODE" = asan ]; then
    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g"
    CFLAGS="$SAN" LDFLAGS="$SAN" build_core
    # Leak detection is off: CPython does not free everything at exit.
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:check_initialization_order=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    # The interpreter is not instrumented, so libasan must be preloaded into
    # every Python process (tests start many), but into nothing else
    # (chromedriver, for one, aborts under it). A sitecustomize in the venv
    # re-executes Python with LD_PRELOAD set (same pid), then takes it out
    # of the environment that the process's children inherit.
    FASTOPSLOG_ASAN_LIB="$(gcc -print-file-name=libasan.so)"
    export FASTOPSLOG_ASAN_LIB
    "$PY" - <<'PYEOF'
import sysconfig
code = '''\
# Written by tools/sanitize.sh asan: preload libasan into Python processes only.
import os, sys
_lib = os.environ.get("FASTOPSLOG_ASAN_LIB")
if _lib:
    if os.environ.get("_FASTOPSLOG_ASAN_PID") != str(os.getpid()):
        os.environ["LD_PRELOAD"] = _lib
        os.environ["_FASTOPSLOG_ASAN_PID"] = str(os.getpid())
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, sys.orig_argv)
    os.environ.pop("LD_PRELOAD", None)
    os.environ.pop("_FASTOPSLOG_ASAN_PID", None)
'''
with open(sysconfig.get_path("purelib") + "/sitecustomize.py", "w") as f:
    f.write(code)
PYEOF
    "$PY" -c 'import fastopslog._opslog_c' # fails unless the preload works
    export PYTHONMALLOC=malloc
    step "test suite under ASan+UBSan"
    # Every test but the two that bound RSS growth: ASan holds freed memory
    # in quarantine (to catch use after free) and never gives it back, so
    # RSS grows by hundreds of MB by design. Their other measures (gc
    # objects, blocks, traced bytes) stay flat; leaks are valgrind's job.
    run "$PY" -m pytest tests -p no:cacheprovider -x -q \
        --deselect "tests/test_leaks.py::test_leaks[pure-publish_churn]" \
        --deselect "tests/test_leaks.py::test_leaks[c-publish_churn]" "$@"
    step "soak under ASan+UBSan"
    run "$PY" -m fastopslog soak --seconds "$SOAK_SECONDS" --impl c
    step "smoke run under ASan+UBSan"
    run "$PY" tools/sanitize_smoke.py 5
else
    CFLAGS="-fno-omit-frame-pointer -g" LDFLAGS="" build_core
    SUPPS=(--suppressions="$REPO/tools/valgrind-python.supp")
    for supp in /usr/lib/valgrind/python3.supp /usr/lib/valgrind/python.supp; do
        if [ -f "$supp" ]; then SUPPS+=(--suppressions="$supp"); fi
    done
    VG=(valgrind --tool=memcheck --error-exitcode=99 --errors-for-leak-kinds=definite
        --leak-check=full --show-leak-kinds=definite --num-callers=40 "${SUPPS[@]}")
    export PYTHONMALLOC=malloc
    step "smoke run under valgrind"
    run "${VG[@]}" "$PY" tools/sanitize_smoke.py 3
    step "focused tests under valgrind: $VALGRIND_TESTS"
    # Not the GIL-free stress test: under valgrind its threads outlive its
    # 10 s join timeout, so it fails and leaves them running at exit, where
    # what their frames hold shows as leaked. tools/sanitize_smoke.py runs
    # the GIL-free snapshot path instead.
    # shellcheck disable=SC2086  # a list of paths
    run "${VG[@]}" "$PY" -m pytest $VALGRIND_TESTS -m c_extension -p no:cacheprovider -x -q \
        --deselect tests/test_gil_free.py::test_gil_free_snapshots_while_others_work "$@"
fi
printf '\n=== [%s] clean, %ds in total\n' "$MODE" $((SECONDS - START))
