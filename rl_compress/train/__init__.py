"""Training: the replay memory, the run directory (lock, checkpoint generation, returns log), the shared
run loop, and the two methods that plug into it (the teacher's DQN and distillation)."""
