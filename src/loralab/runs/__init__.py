"""Runs: one folder per run (metrics, plots, record), the tables a notebook shows, `loralab run`."""

from loralab.runs.finish import finish_preference_run, finish_run
from loralab.runs.folder import (
           new_run_dir,
           peak_memory_gb,
           plot_loss,
           plot_preference,
           train_summary,
           write_metrics,
)
from loralab.runs.notebook_params import notebook_params
from loralab.runs.record import code_version
from loralab.runs.report import adapter_summary, layer_math_table
from loralab.runs.runner import run_notebook

__all__ = ["adapter_summary", "code_version", "finish_preference_run", "finish_run", "layer_math_table", "new_run_dir", "notebook_params", "peak_memory_gb",
           "plot_loss", "plot_preference", "run_notebook", "train_summary", "write_metrics"]
