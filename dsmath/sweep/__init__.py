"""Sweeps: a grid of jobs declared as data (stages x axes of overrides), run as subprocesses in parallel and
resumably, aggregated into mean / 95% t-interval tables (Markdown + JSON) and metric-vs-step plots.

Also the jobs the paper's experiments need beside the stages: held-out loss ("heldout_loss") and Table 6's shared
code corpus + tokenizer ("table6_data"); `python -m experiments.run` runs them (and any dsmath.jobs job).
"""
from dsmath.sweep.tables import aggregate, get_path, markdown_table, read_jsonl_series, t_interval
from dsmath.sweep.grid import (AggregateConfig, AxisSpec, Cell, CurveSpec, LevelSpec, MetricSpec, Stage, StageSpec,
                               SweepConfig, expand, format_value, resolve_sweep_config, setup_stages)
from dsmath.sweep.runner import aggregate_sweep, auto_parallel, run_cell, run_stage, run_sweep, write_outputs

__all__ = ["aggregate", "get_path", "markdown_table", "read_jsonl_series", "t_interval", "AggregateConfig",
           "AxisSpec", "Cell", "CurveSpec", "LevelSpec", "MetricSpec", "Stage", "StageSpec", "SweepConfig", "expand",
           "format_value", "resolve_sweep_config", "setup_stages", "aggregate_sweep", "auto_parallel", "run_cell",
           "run_stage", "run_sweep", "write_outputs"]
