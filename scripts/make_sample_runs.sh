#!/usr/bin/env bash
# Regenerate the sample study under sample_runs/teacher-sft/: the small-scale study behind
# docs/results-teacher-sft.md and the dashboard's content on a fresh machine. Every point is an
# ordinary `python -m adakd` run of the `demo` preset (the study regime of docs/study_regime.md:
# SmolLM2-135M-Instruct fine-tuned on chatterbot's training replies first (§8; once, cached), the
# teacher as loaded with half its MLP neurons pruned as the student, chatterbot data, 200 steps,
# evaluation under the protocol of docs/method.md §7), so the same seeds give the same numbers on
# the same machine. The studies directly under sample_runs/ (docs/results.md) are the earlier
# regime, whose teacher was not fine-tuned; a sweep refuses to resume them with today's demo. Checkpoints (student weights) are deleted after each sweep: sample_runs/ holds run
# data only; `adakd rebuild RUN` retrains a run's student from its config.json.
#
#   bash scripts/make_sample_runs.sh            # all studies, in priority order
#   bash scripts/make_sample_runs.sh ablation   # one study
#
# Cost on an idle 2-core CPU: about 8 minutes per run (6.3 min of training, 1.3 min to evaluate
# the final student on 100 prompts x 3 generation seeds; docs/study_regime.md §7); the first run
# also fine-tunes the teacher (~10 min) and evaluates it and the initial student (~3.5 min more),
# all cached for every later run.
# The ablation (6 runs) takes about 50 minutes, the competence curve (one 1,000-step run) about 40;
# all studies (46 runs) about 6.5 hours: run them on a GPU
# (docs/gpu_study.md). Check a run against a fresh training of its config:
#   .venv/bin/python scripts/check_sample_run.py "sample_runs/teacher-sft/ablation/seed=0,ablation=full"
#
# The same studies on another preset (docs/gpu_study.md), e.g. GPT-2 XL -> GPT-2 on Dolly:
#   PRESET=gpt2-dolly ROOT=runs-gpt2 HF_HUB_OFFLINE=0 \
#     SET="data=data/databricks-dolly-15k.jsonl" bash scripts/make_sample_runs.sh ablation
# PRESET (default demo), ROOT (default sample_runs/teacher-sft), SET (KEY=VALUE overrides for every run),
# PY (default .venv/bin/python), HF_HUB_OFFLINE (default 1: no downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROOT=${ROOT:-sample_runs/teacher-sft}
PRESET=${PRESET:-demo}
SET=${SET:-}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

sweep() {  # sweep NAME ARGS...
  local name=$1; shift
  local extra=()
  if [ -n "$SET" ]; then read -r -a extra <<< "$SET"; extra=(--set "${extra[@]}"); fi
  "$PY" -m adakd sweep --preset "$PRESET" --root "$ROOT" --name "$name" --quiet "${extra[@]}" "$@"
  find "$ROOT/$name" -type d -name checkpoints -prune -exec rm -rf {} +
}

study() {
  case "$1" in
    # Table 2's decisive pair first: plain KD (base) and full AdaKD, three seeds, seed-major so
    # an interrupted study still holds complete pairs.
    ablation)   sweep ablation --grid seed=0,1,2 --grid ablation=base,full ;;
    # The competence curve (docs/study_regime.md §6): plain KD to 1,000 steps, evaluated every 100.
    curve)      sweep competence-curve --grid ablation=base --set max_steps=1000 eval_interval=100 eval_seeds=1 ;;
    components) sweep ablation-components --grid seed=0,1,2 --grid ablation=latf,idts ;;  # Table 2: +LATF, +IDTS
    c-sweep)    sweep c-sweep --grid idts_c=0.1,0.9,0.3,0.7 --grid seed=0 ;; # Fig. 3c-d (c = 0.5 is ablation/full; extremes first)
    schedules)  sweep schedule-fixed --grid latf=fixed --set ratio_start=0.75 &&      # Fig. 3b / Table 4
                sweep schedule-cosine --grid latf=cosine --set ratio_start=1.0 ratio_end=0.75 ;;
    divergences) sweep divergences --grid divergence=fkl,jsd,srkl,ab --grid ablation=base,full ;;  # Table 1
    table1)     sweep table1 --grid table1=gkd,gkd-adakd,distillm,distillm-adakd ;;  # Table 1: GKD / DistiLLM regimes (fkl, rkl, ab are above)
    # The arms of Tables 1 and 3-5 not run above (docs/method.md §6); single seed.
    sft)        sweep sft --grid table1=sft ;;                                # Table 1-2: SFT baseline
    table3)     sweep table3 --grid table3=fkl,rkl,jsd,ce,topk ;;             # hellinger = ablation/full
    table4)     sweep table4 --grid table4=fixed-1.0,linear-0.75,cosine-0.5 ;; # fixed-0.75, cosine-0.75 = schedules; latf = ablation/full
    table5)     sweep table5 --grid table5=fixed-0.8,fixed-1.2,fixed-e-0.5,inverse,ctkd,logit-std ;;  # fixed-1.0 = ablation/latf; idts = ablation/full
    *) echo "unknown study $1 (ablation, curve, components, c-sweep, schedules, divergences, table1, sft, table3, table4, table5)" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then set -- ablation curve components c-sweep schedules divergences table1 sft table3 table4 table5; fi
for s in "$@"; do echo "== $s"; study "$s"; done
