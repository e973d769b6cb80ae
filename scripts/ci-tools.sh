#!/usr/bin/env bash
# Installs the tools the CI gates use, each only if missing (idempotent), and prints how long
# each install took. The cargo tools are compiled from crates.io with `cargo install --locked`.
#
#   scripts/ci-tools.sh                 # all: cargo-fuzz cargo-deny coverage
#   scripts/ci-tools.sh fuzz deny       # only some
#
# coverage: llvm-profdata and llvm-cov of LLVM 19 or newer (scripts/coverage.sh). The
# toolchain's llvm-tools component or a system LLVM serves when present; otherwise Debian's
# llvm-19 package is installed with apt-get (needs root).
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
CARGO_DENY_VERSION=0.20.2
LLVM_PACKAGE=llvm-19

have() { cargo "$1" --version >/dev/null 2>&1; }

install_tool() { # crate version subcommand [extra cargo install args...]
    local crate=$1 version=$2 sub=$3
    shift 3
    if have "$sub"; then
        echo "ci-tools: $crate present ($(cargo "$sub" --version 2>/dev/null | head -1))"
        return
    fi
    local start=$SECONDS
    cargo install --locked --quiet "$crate" --version "$version" "$@"
    echo "ci-tools: installed $crate $version in $((SECONDS - start)) s"
}

has_llvm_tools() { # llvm-profdata of the toolchain, or of a system LLVM >= 19
    local sysroot v
    sysroot=$(rustc --print sysroot)
    compgen -G "$sysroot/lib/rustlib/*/bin/llvm-profdata" >/dev/null && return 0
    for v in 25 24 23 22 21 20 19; do
        [ -x "/usr/lib/llvm-$v/bin/llvm-profdata" ] && return 0
        command -v "llvm-profdata-$v" >/dev/null && return 0
    done
    return 1
}

install_llvm() {
    if has_llvm_tools; then
        echo "ci-tools: llvm-profdata / llvm-cov present"
        return
    fi
    local start=$SECONDS
    command -v apt-get >/dev/null || {
        echo "ci-tools: no LLVM >= 19 tools and no apt-get: install llvm-profdata and llvm-cov" >&2
        exit 1
    }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$LLVM_PACKAGE" >/dev/null
    echo "ci-tools: installed $LLVM_PACKAGE in $((SECONDS - start)) s"
}

wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(fuzz deny coverage)
for tool in "${wanted[@]}"; do
    case "$tool" in
        fuzz) install_tool cargo-fuzz "$CARGO_FUZZ_VERSION" fuzz ;;
        # A debug build: it compiles in about half the time of a release build (the release
        # install took ~15 min on 2 loaded cores), and checking licenses, bans and sources of
        # one lock file takes seconds either way.
        deny) install_tool cargo-deny "$CARGO_DENY_VERSION" deny --debug ;;
        coverage) install_llvm ;;
        *) echo "ci-tools: unknown tool '$tool' (fuzz, deny, coverage)" >&2; exit 2 ;;
    esac
done
