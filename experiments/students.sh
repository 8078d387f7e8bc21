#!/usr/bin/env bash
# The shipped students of one game (GAME=pong by default; GAME=breakout, GAME=space_invaders): distil
# each spec from the game's teacher (Pong: agents/pong/teacher-base, the 1.2M-step teacher of every
# shipped Pong student; other games: agents/GAME/teacher; TEACHER=DIR picks another) with Actor-Mimic (the
# student acts; the shipped ones used DISTILL_ARGS='--temperature 0.01 --lr 1e-3'), evaluate it
# and the teacher on the same 30 games of the default
# protocol (seed 0), and write the table experiments/results/students_GAME.md from the cards of
# every student in agents/GAME/.
# Usage: [GAME=pong] experiments/students.sh [STEPS] [SPEC[@NAME]...]   (defaults: 150000, gmp16 gmp8 gmp32 gmp4)
# A student lands in agents/GAME/NAME (NAME defaults to SPEC), so one spec can be shipped at two settings,
# e.g. gmp15-w5@gmp15-w5-lr3e-4.
# DISTILL_ARGS adds flags to every `rl-compress distill` (e.g. DISTILL_ARGS='--temperature 0.01'); each
# card records its full command, and the table shows it. A run stopped with SIGTERM checkpoints and is
# evaluated as it stands; calling the script again resumes it. A finished student is extended (--resume) when
# STEPS exceeds the steps it has; one that has them is only evaluated again.
set -euo pipefail
cd "$(dirname "$0")/.."
RLC=${RLC:-.venv/bin/rl-compress}
STEPS=${1:-150000}
DISTILL_ARGS=${DISTILL_ARGS:-}
shift || true
SPECS=("${@:-gmp16 gmp8 gmp32 gmp4}")
SPECS=(${SPECS[@]})
GAME=${GAME:-pong}
case $GAME in pong) default_teacher=agents/pong/teacher-base ;; *) default_teacher=agents/$GAME/teacher ;; esac
TEACHER=${TEACHER:-$default_teacher}
tb_game=; [ "$GAME" = pong ] || tb_game=${GAME}_  # Pong keeps its runs/distill_<name> logs, so a resume appends to them
for item in "${SPECS[@]}"; do
  spec=${item%%@*}
  out=agents/$GAME/${item#*@}
  done_steps=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])).get("training",{}); print(t.get("steps",0) if t.get("finished") else 0)' "$out/agent.json" 2>/dev/null || echo 0)
  if [ "$done_steps" -ge "$STEPS" ]; then
    echo "$out: finished at $done_steps steps, not distilled again" >&2
  else
    resume=; [ -f "$out/checkpoint.pt" ] && resume=--resume
    $RLC distill --teacher $TEACHER --student "$spec" --steps "$STEPS" --out "$out" $resume \
      --eval-every 25000 --eval-episodes 5 --tensorboard "runs/distill_${tb_game}$(basename "$out")" --quiet $DISTILL_ARGS
  fi
  $RLC evaluate "$out" --episodes 30 --seed 0 --write-card --quiet
done
dirs=()  # the table holds every shipped student, not only the ones of this call
for card in agents/$GAME/*/agent.json; do
  grep -q '"kind": "student"' "$card" && dirs+=("$(dirname "$card")")
done
$RLC table "${dirs[@]}" --md "experiments/results/students_$GAME.md" --csv "experiments/results/students_$GAME.csv"
