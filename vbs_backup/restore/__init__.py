"""Restores and restore drills."""
