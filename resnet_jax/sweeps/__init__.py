"""Sweeps: grids of config overrides, their launchers, and the tables and plots of their results."""
