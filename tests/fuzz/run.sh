#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-16 (ASan + UBSan, -fsanitize=fuzzer)
# in their own tree and runs each for SECONDS (default 30; CI uses a short run).
# A crash leaves its input in build-fuzz/crash-*; add it to corpus/<target>/
# as a regression input once fixed.
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${MOAT_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECS="${1:-30}"
CC=clang-16 CXX=clang++-16 cmake -S "$ROOT" -B "$BUILD" -DMOAT_FUZZ=ON -DMOAT_SANITIZE=ON \
    -DMOAT_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target policy_fuzz oci_import_fuzz oci_bundle_fuzz wire_fuzz guest_proto_fuzz elf_deps_fuzz
cd "$BUILD"
for t in ${MOAT_FUZZ_TARGETS:-policy oci_import oci_bundle wire guest_proto elf_deps}; do
    echo "==> fuzzing $t for ${SECS}s"
    work="$BUILD/corpus-$t"
    mkdir -p "$work"
    # New inputs go to a scratch copy; the seed corpus in the repo stays as committed.
    ./tests/fuzz/${t}_fuzz -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$work" "$ROOT/tests/fuzz/corpus/$t" 2>&1 | tail -n 12
done
