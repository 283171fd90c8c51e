#!/usr/bin/env bash
# Reproduce the paper's tables (Table 1: WhatsUp; Table 2: VSR).
#
# MODE=search (default), per dataset:
#   1. one pass over the 20% val split evaluates the baseline, ScalingVis over ALPHAS and AdaptVis over
#      WEIGHT1 x WEIGHT2 x THRESHOLDS (every configuration gets its own run folder). THRESHOLDS follows
#      the paper (appendix E.3): 0.2..0.55 for LLaVA-1.5, 0.3..0.65 for LLaVA-1.6, 0.2..0.65 otherwise,
#      in steps of 0.05; VSR uses VSR_THRESHOLDS=auto, the paper's rule (the mean over the labels yes/no
#      of the val split's mean alpha=1 confidence, computed by main_aro.py);
#   2. `evaluation.select` picks the best ScalingVis and AdaptVis configuration on val;
#   3. the baseline and the two selected configurations run on the 80% test split.
# MODE=paper: only the paper's per-dataset settings (run.sh of the original code) on the test split.
# Then `evaluation.report` writes the tables (Markdown + LaTeX) and plots under $OUTPUT.
#
# Finished configurations are skipped and interrupted ones resume, so rerunning this script is cheap.
#
#   bash run.sh                                        # LLaVA-1.5, all datasets
#   DRY_RUN=1 bash run.sh                              # list the planned commands, run nothing
#   MODEL=qwen2-vl DATASETS="Controlled_Images_A VSR" bash run.sh
#   MODE=paper OUTPUT=output/paper bash run.sh
#   LAUNCH="accelerate launch" bash run.sh             # shard every run over the machine's GPUs
set -euo pipefail
cd "$(dirname "$0")"

MODEL=${MODEL:-llava1.5}
DATASETS=${DATASETS:-"Controlled_Images_A Controlled_Images_B COCO_QA_one_obj COCO_QA_two_obj VG_QA_one_obj VG_QA_two_obj VSR"}
DATA_ROOT=${DATA_ROOT:-data}
OUTPUT=${OUTPUT:-output}
MODE=${MODE:-search}
ALPHAS=${ALPHAS:-0.5,0.8,1.2,1.5,2.0}
WEIGHT1=${WEIGHT1:-0.5,0.8}
WEIGHT2=${WEIGHT2:-1.2,1.5,2.0}
# The paper's beta grids (appendix E.3) per model; other models get the union of the two.
case "$MODEL" in
    llava1.5*) DEFAULT_THRESHOLDS=0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55 ;;
    llava1.6*) DEFAULT_THRESHOLDS=0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65 ;;
    *) DEFAULT_THRESHOLDS=0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65 ;;
esac
THRESHOLDS=${THRESHOLDS:-$DEFAULT_THRESHOLDS}
VSR_THRESHOLDS=${VSR_THRESHOLDS:-auto}   # yes/no datasets (VSR*)
# auto: the original LLaVA-1.5 prompt string for llava1.5 / llava1.5-13b, the chat template otherwise.
PROMPT_FORMAT=${PROMPT_FORMAT:-auto}
MATCH=${MATCH:-strict}
BATCH_SIZE=${BATCH_SIZE:-8}
DOWNLOAD=${DOWNLOAD:-1}
LAUNCH=${LAUNCH:-python}
EXTRA=${EXTRA:-}   # more main_aro.py flags for every run, e.g. "--dtype bfloat16 --max-new-tokens 100"

COMMON=(--model-name "$MODEL" --data-root "$DATA_ROOT" --output-dir "$OUTPUT"
        --prompt-format "$PROMPT_FORMAT" --match "$MATCH" $EXTRA)
RUN_FLAGS=(--batch-size "$BATCH_SIZE")
[[ "$DOWNLOAD" == 1 ]] && RUN_FLAGS+=(--download)

evaluate() {  # main_aro.py with the shared flags; printed, and run unless DRY_RUN is set
    echo "+ $LAUNCH main_aro.py $* ${COMMON[*]} ${RUN_FLAGS[*]}"
    [[ -n "${DRY_RUN:-}" ]] || $LAUNCH main_aro.py "$@" "${COMMON[@]}" "${RUN_FLAGS[@]}"
}

selected() {  # the flags of the configuration of method $2 selected on val for dataset $1
    if [[ -n "${DRY_RUN:-}" ]]; then
        echo "<selected-on-val: python -m evaluation.select --dataset $1 --method $2>"
    else
        python -m evaluation.select --dataset "$1" --method "$2" "${COMMON[@]}"
    fi
}

for dataset in $DATASETS; do
    echo "== $dataset ($MODE)"
    if [[ "$MODE" == paper ]]; then
        # No hyper-parameter flags: main_aro.py takes the paper's per-dataset values.
        evaluate --dataset "$dataset" --split test --method base,scaling_vis,adapt_vis
        continue
    fi
    thresholds=$THRESHOLDS
    [[ "$dataset" == VSR* ]] && thresholds=$VSR_THRESHOLDS
    evaluate --dataset "$dataset" --split val --method base,scaling_vis,adapt_vis \
        --weight "$ALPHAS" --weight1 "$WEIGHT1" --weight2 "$WEIGHT2" --threshold "$thresholds"
    scaling_flags=$(selected "$dataset" scaling_vis)
    adapt_flags=$(selected "$dataset" adapt_vis)
    evaluate --dataset "$dataset" --split test --method base
    # shellcheck disable=SC2086  # the selected flags are several words on purpose
    evaluate --dataset "$dataset" --split test --method scaling_vis $scaling_flags
    # shellcheck disable=SC2086
    evaluate --dataset "$dataset" --split test --method adapt_vis $adapt_flags
done

report=(python -m evaluation.report "$OUTPUT" --split test --format both
        --out "$OUTPUT/tables" --plot "$OUTPUT/plots")
echo "+ ${report[*]}"
[[ -n "${DRY_RUN:-}" ]] || "${report[@]}"
