#!/usr/bin/env bash
# The localization benchmark on the three games: each agent plays its own FRAMES frames (seed 0) and
# every map method is scored on them (pointing game, deletion / insertion, sanity check, cost).
# Usage: experiments/localization_bench.sh [FRAMES] [SANITY_FRAMES] [METHODS]
#   (writes experiments/results/localization_bench_<game>.{json,md}; with METHODS, e.g. gmp-occlusion, only those
#   methods on the students, to experiments/results/localization_bench_<game>_<METHODS>.{json,md})
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${1:-100}
SANITY=${2:-8}
METHODS=${3:-}
declare -A AGENTS=(
  [pong]="agents/pong/teacher-base,agents/pong/gmp15-w5-15min,agents/pong/gmp32-w5-1pct-tuned"
  [breakout]="agents/breakout/teacher,agents/breakout/gmp15-w5-15min"
  [space_invaders]="agents/space_invaders/teacher,agents/space_invaders/gmp15-w5-15min"
)
for game in pong breakout space_invaders; do
  agents=${AGENTS[$game]} out=experiments/results/localization_bench_${game} only=()
  if [[ -n "$METHODS" ]]; then
    agents=$(tr ',' '\n' <<< "$agents" | grep -v teacher | paste -sd,) out=${out}_${METHODS//,/_} only=(--methods "$METHODS")
  fi
  .venv/bin/rl-compress bench localization --agents "$agents" --frames "$FRAMES" --sanity-frames "$SANITY" "${only[@]}" \
    --json "$out.json" --md "$out.md"
done
