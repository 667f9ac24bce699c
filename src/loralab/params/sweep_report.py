"""Notebook 02's parameter: which sweep it reports.

    from loralab.params.sweep_report import SweepReportConfig
    SweepReportConfig(sweep_dir="sweeps/rank")
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SweepReportConfig(BaseModel):
    """Notebook 02's parameters; each description is the help line."""

    model_config = ConfigDict(extra="forbid")

    sweep_dir: str = Field("", description="a folder written by loralab sweep, e.g. sweeps/rank; empty picks the "
                           "newest under sweeps/")
