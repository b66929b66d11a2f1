"""Where the project's read-only shared data lives."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
  """../shared/data beside the repo root, or $DSMATH_SHARED_DATA."""
  path = Path(os.environ.get("DSMATH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
  if not path.is_dir():
    raise FileNotFoundError(
        f"shared data directory not found: {path} (set DSMATH_SHARED_DATA to the folder holding gsm8k/, math/, ...)")
  return path
