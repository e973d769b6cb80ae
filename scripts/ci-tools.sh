#!/usr/bin/env bash
# Installs the cargo tools the CI gates use, each only if missing (idempotent), and prints how
# long each install took. Every tool is compiled from crates.io with `cargo install --locked`.
#
#   scripts/ci-tools.sh                 # all: cargo-fuzz cargo-deny coverage
#   scripts/ci-tools.sh fuzz deny       # only some
#
# coverage: cargo-llvm-cov when the toolchain has llvm-tools (rustup component llvm-tools),
# cargo-tarpaulin otherwise.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
CARGO_DENY_VERSION=0.20.2
CARGO_LLVM_COV_VERSION=0.9.1
CARGO_TARPAULIN_VERSION=0.37.5

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

has_llvm_tools() {
    local sysroot
    sysroot=$(rustc --print sysroot)
    compgen -G "$sysroot/lib/rustlib/*/bin/llvm-profdata" >/dev/null
}

wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(fuzz deny coverage)
for tool in "${wanted[@]}"; do
    case "$tool" in
        fuzz) install_tool cargo-fuzz "$CARGO_FUZZ_VERSION" fuzz ;;
        deny) install_tool cargo-deny "$CARGO_DENY_VERSION" deny ;;
        coverage)
            if has_llvm_tools; then
                install_tool cargo-llvm-cov "$CARGO_LLVM_COV_VERSION" llvm-cov
            else
                install_tool cargo-tarpaulin "$CARGO_TARPAULIN_VERSION" tarpaulin
            fi
            ;;
        *) echo "ci-tools: unknown tool '$tool' (fuzz, deny, coverage)" >&2; exit 2 ;;
    esac
done
