"""Reference-model profiles: per-task pass rates of the weak and strong references."""
