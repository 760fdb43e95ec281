#!/usr/bin/env bash
# GPU acceptance run: a fixed set of real trials on one CUDA GPU (under 8 minutes on an A100/H100/H200),
# written as evidence-corpus rows, measured next to predicted. Every step is a plain dstune command.
#
#   scripts/gpu_acceptance.sh [--out DIR]     # on a machine with a CUDA GPU
#   scripts/gpu_acceptance.sh --cpu-check [--out DIR]   # dry run of the pipeline on the CPU: one tiny
#                                                       # trial, rows marked CPU (never GPU evidence)
#
# Trials (one GPU each): opt-125m and opt-1.3b PPO (critic opt-350m) with and without the Hybrid Engine
# at ZeRO 2 and 3; opt-1.3b SFT at ZeRO 2; opt-125m DPO at ZeRO 2; and the doctor's HE probe. Prompts
# and answers are 128 tokens each, batch 8 per GPU, 1 warm-up and 2 measured steps.
# Output in DIR (default reports/gpu-acceptance-<UTC time>): doctor.json, trials/<name>.json
# (dstune profile --json) and trials/<name>/ (trial dirs), rows.csv (corpus format, source
# dstune-acceptance), vs_predicted.csv, sources.json. Exit 2 on a bad flag or when there is no GPU.
set -u -o pipefail

OUT=""
CPU_CHECK=0
DEADLINE_S=480    # the whole run; a trial starts only if its --timeout still fits before it
TRIAL_TIMEOUT_S=110
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "gpu_acceptance.sh: --out needs a directory" >&2; exit 2; }; OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    --cpu-check) CPU_CHECK=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_acceptance.sh: unknown argument '$1' (use --out DIR, --cpu-check or --help)" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-python}"
DSTUNE=("$PY" -m dstune)
ROWS=("$PY" -m dstune.calibration._acceptance)
[ -n "$OUT" ] || OUT="reports/gpu-acceptance-$(date -u +%Y%m%d-%H%M%S)"

if [ "$CPU_CHECK" = 1 ]; then
  export DS_ACCELERATOR=cpu
else
  "${ROWS[@]}" check-gpu >/dev/null || exit 2   # prints its one line: no CUDA GPU here
fi
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  echo "gpu_acceptance.sh: --out $OUT is not empty (trial dirs must be new)" >&2
  exit 2
fi
mkdir -p "$OUT/trials" || { echo "gpu_acceptance.sh: cannot create $OUT" >&2; exit 2; }

COMMON=(--gpus 1 --warmup 1 --steps 2 --timeout "$TRIAL_TIMEOUT_S" --json)
PPO_JOB=(--set max_prompt_seq_len=128 --set max_answer_seq_len=128
         --set per_device_generation_batch_size=8 --set per_device_training_batch_size=8)

trial() {  # trial NAME dstune-profile-args...
  local name="$1"; shift
  if [ $((SECONDS + TRIAL_TIMEOUT_S + 10)) -gt "$DEADLINE_S" ]; then
    echo "skip $name: ${SECONDS}s spent of ${DEADLINE_S}s"
    return
  fi
  echo "trial $name (at ${SECONDS}s)"
  "${DSTUNE[@]}" profile "$@" --out "$OUT/trials/$name" >"$OUT/trials/$name.json" 2>"$OUT/trials/$name.log"
  local rc=$?
  [ "$rc" = 0 ] || echo "  exit $rc: $(tail -n 1 "$OUT/trials/$name.log")"
}

if [ "$CPU_CHECK" = 1 ]; then
  "${DSTUNE[@]}" doctor --json >"$OUT/doctor.json" 2>"$OUT/doctor.log"
  trial tiny-opt-sft-z0 --model tiny-opt --step sft --gpus 1 --warmup 0 --steps 1 --timeout "$TRIAL_TIMEOUT_S" --json \
    --set dtype=bf16 --set max_seq_len=24 --set per_device_train_batch_size=2
  "${ROWS[@]}" rows --cpu --out "$OUT" --doctor "$OUT/doctor.json" "$OUT"/trials/*.json
  exit $?
fi

"${DSTUNE[@]}" doctor --json --refresh >"$OUT/doctor.json" 2>"$OUT/doctor.log"   # the HE probe, asked afresh
ppo() {  # ppo MODEL: with and without HE at ZeRO 2 and 3
  local zero he
  for zero in 2 3; do
    for he in false true; do
      trial "$1-ppo-z$zero-he-$he" --model "$1" --step ppo --critic-model opt-350m "${COMMON[@]}" "${PPO_JOB[@]}" \
        --set actor_zero_stage=$zero --set critic_zero_stage=$zero --set enable_hybrid_engine=$he
    done
  done
}
ppo opt-125m
trial opt-1.3b-sft-z2 --model opt-1.3b --step sft "${COMMON[@]}" \
  --set zero_stage=2 --set max_seq_len=512 --set per_device_train_batch_size=8
trial opt-125m-dpo-z2 --model opt-125m --step dpo "${COMMON[@]}" \
  --set zero_stage=2 --set max_seq_len=512 --set per_device_train_batch_size=8
ppo opt-1.3b
"${ROWS[@]}" rows --out "$OUT" --doctor "$OUT/doctor.json" "$OUT"/trials/*.json
status=$?
echo "wrote $OUT/rows.csv, $OUT/vs_predicted.csv and $OUT/sources.json in ${SECONDS}s"
exit $status
