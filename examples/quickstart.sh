#!/usr/bin/env bash
# Builds eventdir and walks through a real example in a temporary folder:
# orders are created, paid and cancelled; then the history is read back and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
eventdir="$PWD/target/release/eventdir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
    printf '\n$ eventdir'
    printf ' %q' "$@"
    printf '\n'
    "$eventdir" "$@"
}

run init "$work/shop"
export EVENTDIR_FOLDER="$work/shop"
run append order:42 --data '{"status":"open","items":[{"sku":"A-1","qty":2}]}' --meta '{"actor":"alice","event":"OrderPlaced"}'
run append order:42 --set status=paid --expect 0
run append order:43 --data '{"status":"open","items":[]}'
run append order:43 --type delete
run get order:42
run at order:42 --seq 0
run ls
run replay order:42 --each
printf '\n$ eventdir append order:42 --set status=shipped --expect 0   # stale: exits 3\n'
"$eventdir" append order:42 --set status=shipped --expect 0 || echo "(exit code $?)"
run verify
