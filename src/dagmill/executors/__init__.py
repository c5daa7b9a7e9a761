"""Executors run task actions and report results as events; they know no engine or store."""
