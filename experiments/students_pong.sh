#!/usr/bin/env bash
# The Pong students (the command the README and the Pong cards name): experiments/students.sh with GAME=pong.
exec env GAME=pong "$(dirname "$0")/students.sh" "$@"
