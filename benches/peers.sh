#!/usr/bin/env bash
# The embedded store beside its embedded peers (issue 14): builds benches/peers (its own cargo
# workspace, kept out of the main build) in release and runs it. Columns a–e and disk for
# logbook, fjall, okaywal and redb on the same generated order events, each system in turn in
# a fresh directory on the same file system, with the fdatasync ceiling measured in the same
# run. Read the figures as ratios within the run: absolute ones move with the neighbours.
#
# Usage: benches/peers.sh [options of the harness], e.g.
#   benches/peers.sh                                   # the full workload, one round
#   benches/peers.sh --rounds 3                        # what docs/benchmarks.md quotes
#   benches/peers.sh --events 20000 --streams 2500 --seconds 1    # a quick run
#   benches/peers.sh --only d,e --systems logbook,redb
# Options: --events N (default 172033), --streams S (default 20000), --rounds R, --only LIST
# (a,b,c,d,e,disk), --systems LIST (logbook,fjall,okaywal,redb), --seconds T (length of a, c
# and d; default 5), --dir DIR (where the temporary directories go; default $TMPDIR or /tmp).
# The build goes to $CARGO_TARGET_DIR when set, else benches/peers/target.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
manifest="$here/peers/Cargo.toml"
target="${CARGO_TARGET_DIR:-$here/peers/target}"
cargo build --release --quiet --manifest-path "$manifest" --target-dir "$target"
bin="$target/release/logbook-peers"

systems="logbook,fjall,okaywal,redb"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[$i]}" == "--systems" && $((i + 1)) -lt ${#args[@]} ]] && systems="${args[$((i + 1))]}"
done
peers=$(cargo tree --manifest-path "$manifest" --depth 1 --edges normal --prefix none 2>/dev/null \
    | grep -E '^(fjall|okaywal|redb) ' | tr '\n' ' ' || true)
echo "peers.sh: running ${systems//,/, } (peer crates: ${peers:-see benches/peers/Cargo.lock}); host: $(nproc) cores, $(uname -r)"
exec "$bin" "$@"
