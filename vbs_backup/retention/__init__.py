"""Retention: the planner decides, prune executes."""
