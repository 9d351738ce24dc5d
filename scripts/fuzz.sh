#!/usr/bin/env bash
# Fuzzes, for a bounded time each (default 60 s): the module admission parser (manifest +
# signature), the replay-log reader, and replay() itself with hostile but well-framed logs
# (fuzz/fuzz_targets/replay.rs; its body also runs, bounded and seeded, in `cargo test`).
#   scripts/fuzz.sh [seconds] [target...]        e.g. scripts/fuzz.sh 600 replay
# Needs the nightly toolchain and cargo-fuzz (installed on first use). Not part of CI: CI
# runs the bounded deterministic part (tests/replay_hostile.rs). Findings land in
# fuzz/artifacts/<target>/; reproduce one with `cargo +nightly fuzz run <target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(admit replay_log replay)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked
for target in "${targets[@]}"; do
  # replay: one input runs whole sessions (a runtime, compiled modules, ticks): inputs stay
  # under 4 KiB, and a slow one is a finding too (-timeout).
  # Each input is a whole program (past its end every choice reads 0), so it gets its full
  # length from the start (-len_control=0), and random seeds give the first programs.
  args=(-max_total_time="$secs" -max_len=65536)
  if [ "$target" = replay ]; then
    args=(-max_total_time="$secs" -max_len=4096 -len_control=0 -timeout=30 -rss_limit_mb=4096)
    mkdir -p corpus/replay
    if [ -z "$(ls -A corpus/replay)" ]; then
      for i in $(seq 1 64); do head -c $((16 + RANDOM % 496)) /dev/urandom > "corpus/replay/seed-$i"; done
    fi
  fi
  cargo +nightly fuzz run "$target" -- "${args[@]}"
done
