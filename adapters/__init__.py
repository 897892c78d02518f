"""Thin glue between the suite's environments and RL trainers."""
