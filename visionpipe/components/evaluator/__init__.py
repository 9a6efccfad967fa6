"""The one Evaluator: every task's model scored, gated and blessed the same way."""
