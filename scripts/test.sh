#!/usr/bin/env bash
# The project's test command (README "Tests"): installs the pinned test
# fixtures (npm and PyPI) when missing, then runs every test.
# Needs only cargo, node (>= 20) with npm, and python3 (>= 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-fixtures.sh
# Tests wait on real servers more than on the CPU: run more than 2 at once.
cargo test -- --test-threads "${TEST_THREADS:-6}"
