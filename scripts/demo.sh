#!/usr/bin/env bash
# Run every spmcli command on the bundled sample images; results go to $2.
set -euo pipefail
SPMCLI=${1:-spmcli}
OUT=${2:-demo_output}
mkdir -p "$OUT"
step() { echo; echo "\$ spmcli $*"; "$SPMCLI" "$@"; }

step learn-dict sample_images/camera.png -o "$OUT/camera_dict.npz" --atoms-png "$OUT/camera_atoms.png" --seed 0

# demo:end
echo
echo "Done. Open the files in $OUT/:"
ls -1 "$OUT"
