"""The bundled reference trainer (GRPO) and baseline agents."""
