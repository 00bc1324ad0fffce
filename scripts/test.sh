#!/usr/bin/env bash
# Run every check CI runs: lint, types, unit tests, and the root namespace tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check routed bgp tests bench
.venv/bin/ruff format --check routed bgp tests bench
.venv/bin/mypy
# As root, the namespace tests must run: a skip would hide a broken data plane.
export ROUTED_REQUIRE_ROOT=1
# pytest exits 5 when it collected nothing; with `set -e` that fails the run, as it must.
# Four workers on two cores: the namespace tests mostly wait on timers and peers (13 min of
# CPU in a 14.5 min run with three workers, 10.5 min with four), and every test names
# what it makes uniquely (rt-<hex>), so they share the machine. One test at a time per
# worker, longest first (the `long` marks): xdist's default hands out contiguous chunks,
# which gave one worker every long test (NOTES.md, 2026-11-26 third session).
exec .venv/bin/pytest -p no:cacheprovider -n "${ROUTED_TEST_WORKERS:-4}" --dist load --maxschedchunk 1 "$@"
