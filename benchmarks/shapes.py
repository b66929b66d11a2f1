"""Command-line flags for the standard GRPO step shape (../shared/BENCHMARK-SHAPES.md), shared by the RL benchmarks."""
import argparse


def add_grpo_shape_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
  ap.add_argument("--model", default="S")
  ap.add_argument("--prompts", type=int, default=16)
  ap.add_argument("--group", type=int, default=8)
  ap.add_argument("--prompt-len", type=int, default=64)
  ap.add_argument("--completion-len", type=int, default=128)
  ap.add_argument("--reps", type=int, default=5)
  return ap
