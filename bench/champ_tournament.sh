#!/usr/bin/env bash
# Chen et al. on fixed pools: a knockout tournament against majority vote over the same eight
# answers per CHAMP problem, drawn from the four commercial models' recorded answers (no
# generation; the evaluation model is only the judge). The CHAMP problems whose gold answer the
# math judge can check (244 of 270), in the dataset's order. Reports in OUT/<spec>/report.md,
# the overlay in OUT/comparison.md.
#   bash bench/champ_tournament.sh     # PROBLEMS=40 CONCURRENCY=4 OUT=runs/bench-champ
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
.venv/bin/tts-graph eval \
    --spec bench/specs/champ-majority-8.yaml --spec bench/specs/champ-knockout-8.yaml \
    --dataset champ --dataset-option checkable=true \
    --limit "${PROBLEMS:-40}" --concurrency "${CONCURRENCY:-4}" --out "${OUT:-runs/bench-champ}"
