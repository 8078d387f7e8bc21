"""Atari: games (ROM ids, aliases, action sets, reference scores), the preprocessed vector and screen
environments, and the evaluation protocol."""
