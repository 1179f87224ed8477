"""GRPO training with a task selector choosing every batch."""
