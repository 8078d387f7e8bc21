#!/usr/bin/env bash
# Localization scores on Pong: the top attention peak of each frame against the objects that
# OCAtari reads from the RAM (radius 10 screen px), for the teacher the students were distilled from (agents/pong/teacher-base: Grad-CAM, perturbation
# saliency) and each shipped student (GMP traced to the pixel, GMP at the cell centres, Grad-CAM,
# perturbation), each agent playing its own FRAMES frames (seed 0). Writes experiments/results/localization_pong/*.json and
# experiments/results/localization_pong.md: the hit rates of the top peak, then of any of the top 3 peaks,
# then of the top peak against the objects of the 4 stacked frames the agent saw.
# Usage: [SPECS="name ..."] experiments/localization_pong.sh [FRAMES]   (students: agents/pong/<name>)
set -euo pipefail
cd "$(dirname "$0")/.."
RLC=${RLC:-.venv/bin/rl-compress}
FRAMES=${1:-1000}
OUT=experiments/results/localization_pong
mkdir -p "$OUT" runs/localize
jsons=()
score() {  # agent method
  local name; name=$(basename "$1")_$2
  $RLC localize "$1" --frames "$FRAMES" --method "$2" --seed 0 --score \
    --out "runs/localize/$name.npz" --json "$OUT/$name.json"
  jsons+=("$OUT/$name.json")
}
score agents/pong/teacher-base gradcam
score agents/pong/teacher-base perturbation
for spec in ${SPECS:-gmp16 gmp15-w5 gmp32-w5 gmp32-w5-1pct-tuned}; do
  [ -d "agents/pong/$spec" ] || continue
  for method in gmp gmp-cell gradcam perturbation; do score "agents/pong/$spec" "$method"; done
done
{
  echo "Top peak within 10 px of an object (per class: of the frames where it is present):"
  echo
  .venv/bin/python -m rl_compress.attention.score "${jsons[@]}"
  echo
  echo "Any of the top 3 peaks within 10 px of an object:"
  echo
  .venv/bin/python -m rl_compress.attention.score --top3 "${jsons[@]}"
  echo
  echo "Top peak within 10 px of an object in any of the 4 stacked frames the agent saw:"
  echo
  .venv/bin/python -m rl_compress.attention.score --stack "${jsons[@]}"
} > experiments/results/localization_pong.md.tmp
mv experiments/results/localization_pong.md.tmp experiments/results/localization_pong.md
cat experiments/results/localization_pong.md
