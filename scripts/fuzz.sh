#!/usr/bin/env bash
# Fuzzes the module admission parser (manifest + signature) and the replay-log reader for a
# bounded time each (default 60 s): `scripts/fuzz.sh [seconds]`. Needs the nightly toolchain
# and cargo-fuzz (installed on first use). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked
for target in admit replay_log; do
  cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -max_len=65536
done
