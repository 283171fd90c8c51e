#!/usr/bin/env bash
# Reproduce the paper's tables (Table 1: WhatsUp; Table 2: VSR; SUITE=general: Table 4, general QA).
#
# MODE=search (default), per dataset:
#   1. one pass over the 20% val split evaluates the baseline, ScalingVis over ALPHAS and AdaptVis over
#      WEIGHT1 x WEIGHT2 x THRESHOLDS (every configuration gets its own run folder). THRESHOLDS follows
#      the paper (appendix E.3): 0.2..0.55 for LLaVA-1.5, 0.3..0.65 for LLaVA-1.6, 0.2..0.65 otherwise,
#      in steps of 0.05; VSR uses VSR_THRESHOLDS=auto, the paper's rule (the mean over the labels yes/no
#      of the val split's mean alpha=1 confidence, computed by main_aro.py);
#   2. `evaluation.select` picks the best ScalingVis and AdaptVis configuration on val;
#   3. the baseline and the two selected configurations run on the 80% test split.
#   Methods of METHODS other than scaling_vis and adapt_vis (e.g. the paper's comparison methods vcd and
#   dola) run on test at their published defaults, unless GRID_<method> gives a val grid, e.g.
#   GRID_vcd="--cd-alpha 0.5,1": then they are selected on val like the others.
# MODE=paper: only the paper's per-dataset settings (run.sh of the original code) on the test split.
# SUITE=general: the appendix's check that general QA is not hurt (Tables 3, 4, 10): POPE (all three
#   subsets), GQA, VQAv2 (a fixed 5k sample) and TextVQA, whole split, every method of METHODS at its
#   defaults (ScalingVis alpha GENERAL_WEIGHT); no val selection.
# Then `evaluation.report` writes the tables (Markdown + LaTeX) and plots under $OUTPUT.
#
# Finished configurations are skipped and interrupted ones resume, so rerunning this script is cheap.
#
#   bash run.sh                                        # LLaVA-1.5, all datasets
#   DRY_RUN=1 bash run.sh                              # list the planned commands, run nothing
#   MODEL=qwen2-vl DATASETS="Controlled_Images_A VSR" bash run.sh
#   MODE=paper OUTPUT=output/paper bash run.sh
#   SUITE=general MODEL=llava1.5 bash run.sh           # Table 4: POPE, GQA, VQAv2, TextVQA
#   LAUNCH="accelerate launch" bash run.sh             # shard every run over the machine's GPUs
set -euo pipefail
cd "$(dirname "$0")"

MODEL=${MODEL:-llava1.5}
SUITE=${SUITE:-spatial}
case "$SUITE" in
    spatial) DEFAULT_DATASETS="Controlled_Images_A Controlled_Images_B COCO_QA_one_obj COCO_QA_two_obj VG_QA_one_obj VG_QA_two_obj VSR" ;;
    general) DEFAULT_DATASETS="POPE GQA VQAv2 TextVQA" ;;
    *) echo "error: unknown SUITE=$SUITE; use spatial or general" >&2; exit 2 ;;
esac
DATASETS=${DATASETS:-$DEFAULT_DATASETS}
METHODS=${METHODS:-base,scaling_vis,adapt_vis}
GENERAL_WEIGHT=${GENERAL_WEIGHT:-0.8}
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

IFS=, read -r -a methods <<< "$METHODS"

grid_flags() {  # the val grid of method $1 on dataset $2 ("" when it runs at its defaults)
    local grid_var="GRID_$1"
    case "$1" in
        scaling_vis) echo "--weight $ALPHAS" ;;
        adapt_vis)
            local thresholds=$THRESHOLDS
            [[ "$2" == VSR* ]] && thresholds=$VSR_THRESHOLDS
            echo "--weight1 $WEIGHT1 --weight2 $WEIGHT2 --threshold $thresholds" ;;
        *) echo "${!grid_var:-}" ;;
    esac
}

for dataset in $DATASETS; do
    echo "== $dataset ($SUITE, $MODE)"
    if [[ "$SUITE" == general ]]; then
        flags=()
        [[ ",$METHODS," == *,scaling_vis,* ]] && flags+=(--weight "$GENERAL_WEIGHT")
        evaluate --dataset "$dataset" --split all --method "$METHODS" "${flags[@]}"
        continue
    fi
    if [[ "$MODE" == paper ]]; then
        # No hyper-parameter flags: main_aro.py takes the paper's per-dataset values (and the
        # comparison methods their published defaults).
        evaluate --dataset "$dataset" --split test --method "$METHODS"
        continue
    fi
    searched=() searched_flags=() fixed=()
    for method in "${methods[@]}"; do
        [[ "$method" == base ]] && continue
        flags=$(grid_flags "$method" "$dataset")
        if [[ -n "$flags" ]]; then searched+=("$method"); searched_flags+=($flags); else fixed+=("$method"); fi
    done
    if (( ${#searched[@]} )); then
        evaluate --dataset "$dataset" --split val --method "base,$(IFS=,; echo "${searched[*]}")" "${searched_flags[@]}"
    fi
    evaluate --dataset "$dataset" --split test --method "$(IFS=,; echo "base${fixed[*]:+,${fixed[*]}}")"
    for method in "${searched[@]}"; do
        chosen=$(selected "$dataset" "$method")   # a failed selection stops the script (set -e)
        # shellcheck disable=SC2086  # the selected flags are several words on purpose
        evaluate --dataset "$dataset" --split test --method "$method" $chosen
    done
done

report_split=test
[[ "$SUITE" == general ]] && report_split=all
report=(python -m evaluation.report "$OUTPUT" --split "$report_split" --format both
        --out "$OUTPUT/tables" --plot "$OUTPUT/plots")
echo "+ ${report[*]}"
[[ -n "${DRY_RUN:-}" ]] || "${report[@]}"
