#!/usr/bin/env bash
# The GPU measurements issues 7 and 8 ask for, in stages meant to fit the device's ten minutes per command, so
# that scarce device time goes to measuring and not to deciding what to measure. Not yet run on a GPU: the
# stage lengths are guesses, and each stage's Python is tested on the CPU only. Results go to $OUT (out/gpu).
#
#   bash benchmarks/gpu.sh speed      # steps/s by preset x size x variant, and the convolution ceiling
#   bash benchmarks/gpu.sh compile    # the compiled variants (each compiles for a minute or so)
#   bash benchmarks/gpu.sh parity     # F16 512², sigma 25, paper net, automatic stopping: fp32 against bf16
#   bash benchmarks/gpu.sh parallel   # K = 1, 4, 8 images of 256² at once against one after another
#   bash benchmarks/gpu.sh quality    # Barbara with 50 % missing at full size: the paper's net and dip's
#   bash benchmarks/gpu.sh sr         # the paper's x4 table on CSet5 at full size, paper-sr (then CSet14: sr14)
#   bash benchmarks/gpu.sh tiles      # a 12-megapixel scratch (windows) and a 4-megapixel tiled denoise, with
#                                     # the estimate against the run: tiles K at once on the GPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python}
case "${1:-}" in
speed | compile | parity | parallel | quality | sr | sr14 | tiles) ;;
*)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

case "${1:-}" in
speed)
    "$PYTHON" benchmarks/speed.py --presets paper,light,paper-jpeg --sizes 256,512 --device cuda \
        --variants plain,sync,channels_last,bf16,bf16+channels_last+sync --steps 60 --warmup 20 --conv-ceiling \
        --json "$OUT/speed.json" | tee "$OUT/speed.txt"
    ;;
compile)
    "$PYTHON" benchmarks/speed.py --presets paper --sizes 256,512 --device cuda \
        --variants plain,compile+sync,compile+bf16+channels_last+sync --steps 60 --warmup 20 \
        --json "$OUT/speed_compile.json" | tee "$OUT/speed_compile.txt"
    ;;
parity)
    # The target: >= 3x the plain variant's steps/s at 512² at equal PSNR (+-0.1 dB), with automatic stopping.
    "$PYTHON" benchmarks/early_stopping.py --size 0 --cap 3000 --preset paper --images F16 --corruptions gauss25 \
        --device cuda --variants plain,bf16+channels_last,bf16 --json "$OUT/parity.json" | tee "$OUT/parity.txt"
    ;;
parallel)
    "$PYTHON" benchmarks/parallel.py --k 1,4,8 --size 256 --preset paper --steps 300 --device cuda \
        --json "$OUT/parallel.json" | tee "$OUT/parallel.txt"
    ;;
quality)
    "$PYTHON" benchmarks/quality.py --size 0 --tasks drop50 --images barbara --methods dip-paper,dip,biharmonic \
        --device cuda --csv "$OUT/barbara.csv" --markdown "$OUT/barbara.md" | tee "$OUT/barbara.txt"
    ;;
tiles)
    # The scratch with the defaults (the paper's inpainting net on a GPU, its windows K at once); the 4-megapixel
    # denoise with the light preset, 200 steps a tile to stay inside the ten minutes (host peak memory and time).
    "$PYTHON" benchmarks/tiles.py large --width 4000 --height 3000 --length 300 --out "$OUT/tiles_large" \
        | tee "$OUT/tiles_large.txt"
    "$PYTHON" benchmarks/tiles.py memory --megapixels 4 --tile 512 --iters 200 --out "$OUT/tiles_memory" \
        | tee "$OUT/tiles_memory.txt"
    ;;
sr | sr14)
    # Whole images cut to a multiple of 32, as the paper's notebook; the paper's net and 2000 steps (x4).
    SET=$([ "$1" = sr ] && echo CSet5 || echo CSet14)
    "$PYTHON" benchmarks/sr_table.py --sets "$SET" --crop 0 --preset paper --threads 4 \
        --csv "$OUT/sr_$SET.csv" | tee "$OUT/sr_$SET.txt"
    ;;
esac
