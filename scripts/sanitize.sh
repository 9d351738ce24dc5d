#!/usr/bin/env bash
# Runs the tests of the engine's unsafe modules under AddressSanitizer (needs a nightly
# toolchain: `rustup toolchain install nightly`). Not part of CI: it rebuilds wasmtime
# instrumented (~5 minutes on 2 cores). Miri cannot run these tests: they call mmap/madvise.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS=detect_leaks=0 \
  cargo +nightly test -p lockstep-core --lib --target x86_64-unknown-linux-gnu \
  --target-dir target/asan -- slab_memory ring host:: io_window
