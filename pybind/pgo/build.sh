#!/usr/bin/env bash
# Build shmtel._native with profile-guided optimization and install it into the venv
# (`make pybuild`; `make pybuild PGO=0` builds without it).
#
#   1. an instrumented build (`-Cprofile-generate`, its own target directory);
#   2. the training run, `pybind/pgo/train.py`: the ASGI middleware around the benchmark's
#      handler and the rest of the public API, in proportion to how services use them;
#   3. `llvm-profdata merge` (LLVM's own tool, of the major version rustc was built with:
#      Debian's llvm-N, installed when missing);
#   4. the optimized build (`-Cprofile-use`), installed as `maturin develop` installs.
#
# Why: the extension's per-request code runs once per request in a process whose interpreter
# and server already overflow the instruction cache, so it costs about one cache miss per line
# of code it touches. The profile lets LLVM put the hot paths together and the cold ones
# (errors, set-up, full rings) aside: benches/README.md, "End to end", has the figures.
#
# Without an llvm-profdata of rustc's LLVM version (no apt), it says so and builds without PGO.
# PGO=0 in the environment builds without it at once (the plain `maturin develop` build).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VIRTUAL_ENV:-$root/.venv}
target=${CARGO_TARGET_DIR:-$root/target}
maturin=$venv/bin/maturin
# The package's bytecode, as pip writes it when it installs a wheel: `maturin develop` installs
# the sources in place and writes none, and where PYTHONDONTWRITEBYTECODE is set (this machine's
# default) every process would compile them at import. Besides the time, the compiler's freed
# buffers leave holes of 24-146 KiB in glibc's heap; the ASGI benchmark's worker then served
# h11's regex stacks from them at 2.4x the cost of the heap's top (+5k instructions per request,
# benches/README.md, "End to end").
compile_sources() {
    "$venv/bin/python" -m compileall -q "$root/pybind/python/shmtel"
}
# `maturin develop` of the `pyext` profile, with the extra environment given (VAR=value ...).
develop() {
    (cd "$root/pybind" && env VIRTUAL_ENV="$venv" "$@" "$maturin" develop --profile pyext)
}
plain() {
    develop
    compile_sources
    exit 0
}

if [ "${PGO:-1}" = 0 ]; then
    plain
fi

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
find_profdata() {
    local sysroot
    sysroot=$(rustc --print sysroot)
    # rustup's llvm-tools component, then Debian's llvm-N.
    for p in "$sysroot"/lib/rustlib/*/bin/llvm-profdata "$(command -v "llvm-profdata-$major" || true)"; do
        if [ -n "$p" ] && [ -x "$p" ]; then
            echo "$p"
            return
        fi
    done
}
profdata=$(find_profdata)
if [ -z "$profdata" ] && command -v apt-get >/dev/null; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    echo "pgo: installing Debian's llvm-$major for llvm-profdata-$major" >&2
    $sudo apt-get install -y -q "llvm-$major" >/dev/null 2>&1 ||
        { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "llvm-$major" >/dev/null 2>&1; } ||
        true
    profdata=$(find_profdata)
fi
if [ -z "$major" ] || [ -z "$profdata" ]; then
    echo "pgo: WARNING: no llvm-profdata for rustc's LLVM ${major:-?}: building without profile-guided optimization" >&2
    plain
fi

raw=$target/pgo/raw
data=$target/pgo/shmtel.profdata
flags=${RUSTFLAGS:-}
rm -rf "$raw" "$data"
mkdir -p "$target/pgo"

echo "pgo: 1/4 instrumented build" >&2
develop CARGO_TARGET_DIR="$target/pgo-generate" RUSTFLAGS="$flags -Cprofile-generate=$raw"
# Build scripts and proc macros were instrumented too, and wrote their profiles while building.
rm -rf "$raw"

echo "pgo: 2/4 training run" >&2
LLVM_PROFILE_FILE="$raw/shmtel-%p-%m.profraw" "$venv/bin/python" "$root/pybind/pgo/train.py"

echo "pgo: 3/4 merge ($profdata)" >&2
"$profdata" merge -o "$data" "$raw"

echo "pgo: 4/4 optimized build" >&2
develop CARGO_TARGET_DIR="$target/pgo-use" RUSTFLAGS="$flags -Cprofile-use=$data"
compile_sources
