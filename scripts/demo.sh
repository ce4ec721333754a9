#!/usr/bin/env bash
# Run every spmcli command on the bundled sample images; results go to $2.
set -euo pipefail
SPMCLI=${1:-spmcli}
OUT=${2:-demo_output}
mkdir -p "$OUT"
step() { echo; echo "\$ spmcli $*"; "$SPMCLI" "$@"; }

step learn-dict sample_images/camera.png -o "$OUT/camera_dict.npz" --atoms-png "$OUT/camera_atoms.png" --seed 0

step learn-dict sample_images/detect/good -o "$OUT/detect_model.npz" --detector --seed 0
# detect exits 1 with --fail-on-anomaly; here the report and heatmaps are the point, so plain exit 0.
step detect sample_images/detect/incoming --dict "$OUT/detect_model.npz" --report "$OUT/detect_report.json" \
    --heatmap-dir "$OUT/detect_maps" --masks-dir "$OUT/detect_masks" --db "$OUT/inspections.sqlite" --new-only --jobs 2
# The page a person opens: anomalies first, with their regions and explanations.
step report "$OUT/inspections.sqlite" -o "$OUT/inspection_report.html"

# inpaint: fill the pixels under the text mask; the untouched original is the reference for the PSNR.
step inpaint sample_images/camera.png --mask sample_images/inpaint/camera_mask.png -o "$OUT/camera_inpainted.png" \
    --reference sample_images/camera.png --report "$OUT/inpaint_report.json"
# inpaint a colour image whose dropped pixels are marked by their value (black), spm-image style.
step inpaint sample_images/inpaint/coffee_dropped.png --missing-value 0 -o "$OUT/coffee_filled.png" \
    --reference sample_images/coffee.png

# Total variation: the sample images are clean, so tell it the noise level to smooth for.
step tv-denoise sample_images/camera.png sample_images/coffee.png --output-dir "$OUT/tv" --sigma 15 --report "$OUT/tv_report.json"

# reconstruct: rebuild the camera from 4 atoms per patch of the dictionary learned above, then
# K-SVD denoising (a dictionary learned from the image itself); the colour sample is clean, so give a sigma.
step reconstruct sample_images/camera.png -o "$OUT/camera_rebuilt.png" --dict "$OUT/camera_dict.npz" --sparsity 4 \
    --reference sample_images/camera.png --report "$OUT/reconstruct_report.json"
step reconstruct sample_images/coffee.png -o "$OUT/coffee_ksvd.png" --sigma 8

# demo:end
echo
echo "Done. Open the files in $OUT/:"
ls -1 "$OUT"
