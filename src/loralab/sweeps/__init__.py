"""Sweeps: one notebook run over a grid of params (`loralab sweep`), and the tables and plots of a sweep folder."""

from loralab.sweeps.report import load_results, metric_plots, resolve_sweep_dir, summary_table
from loralab.sweeps.sweep import load_sweep_spec, plan_sweep, run_sweep

__all__ = ["load_results", "load_sweep_spec", "metric_plots", "plan_sweep", "resolve_sweep_dir", "run_sweep",
           "summary_table"]
