"""Crowd tasks: feature visualizations, HIT building, publishing and the task server."""
