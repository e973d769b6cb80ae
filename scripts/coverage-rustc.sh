#!/bin/sh
# RUSTC_WORKSPACE_WRAPPER of scripts/coverage.sh: cargo runs it for workspace crates only, so
# only they are instrumented for coverage. Arguments: the rustc path, then rustc's arguments.
exec "$@" -C instrument-coverage
