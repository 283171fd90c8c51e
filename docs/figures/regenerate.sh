#!/usr/bin/env bash
# Regenerates the README's example figures (docs/figures/<figure>.png) from the shipped toy model on the
# synthetic Controlled-A scenes: one `python -m analysis all` run, then the first PNG of each figure copied here.
# ScalingVis at alpha = 0.2 (a strong smoothing) so that the toy model, which already attends to the right
# place, changes some answers. About 30 s on 2 idle CPU cores. Usage: bash docs/figures/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m analysis all --model-name toy --dataset Synthetic_Controlled_A --limit 96 --batch-size 32 \
    --method scaling_vis --weight 0.2 --samples 0 --dpi 60 --out "$work"
for folder in "$work"/*/; do
    name="$(basename "$folder")"
    [ "$name" = captures ] && continue
    cp "$(ls "$folder"*.png | head -n 1)" "docs/figures/$name.png"
    cp "$folder/caption.txt" "docs/figures/$name.txt"
done
