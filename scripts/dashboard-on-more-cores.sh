#!/bin/bash
# The dashboard overhead (benches/dashboard-conditions.mjs) on a machine with more cores than
# the tick uses, where the server and the clients need not take a core from the tick (as a
# dashboard user's browser would not). Used with the `device` tool's 16-core machine, which has
# no Node: Node itself and the built addon travel xz-compressed beside the checkout.
#
#   [ROUNDS_1K=7 ROUNDS_10K=7 TICKS_1K=3000 TICKS_10K=400] scripts/dashboard-on-more-cores.sh NODE_XZ ADDON_XZ   (either may be "-": use what is installed)
#
# Needs dist/ (the example agents) and node_modules/{ws,uplot}.
set -eu
cd "$(dirname "$0")/.."
unpack() { # src dst
  python3 -c 'import lzma, shutil, sys, os
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as g: shutil.copyfileobj(f, g)
os.chmod(sys.argv[2], 0o755)' "$1" "$2"
}
if [ "${1:--}" != - ]; then mkdir -p /tmp/lockstep-node && unpack "$1" /tmp/lockstep-node/node && export PATH=/tmp/lockstep-node:$PATH; fi
if [ "${2:--}" != - ]; then unpack "$2" lockstep.linux-x64-gnu.node; fi
node --version; nproc; uptime
node benches/dashboard-conditions.mjs 1000 2 "${ROUNDS_1K:-7}" "${TICKS_1K:-3000}"
node benches/dashboard-conditions.mjs 10000 2 "${ROUNDS_10K:-7}" "${TICKS_10K:-400}"
