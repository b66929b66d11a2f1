#!/usr/bin/env bash
# Cloud TPU pod launcher for dsmath: create a TPU VM slice, copy the code, install, run one config on every worker,
# collect logs; checkpoints and metrics go straight to gs:// (the config's workdir).
#
#   launch/tpu_pod.sh create                       # create the slice (TPU_NAME, ZONE, ACCELERATOR, VERSION below)
#   launch/tpu_pod.sh setup                        # copy this checkout to every worker and pip install it
#   launch/tpu_pod.sh run configs/pretrain_7b.py [--config.key=value ...]   # all workers, in the background
#   launch/tpu_pod.sh logs                         # tail worker 0's log
#   launch/tpu_pod.sh collect [local_dir]          # copy every worker's log (and the run's gs:// summary) locally
#   launch/tpu_pod.sh delete                       # delete the slice (billing stops)
#
# Environment (defaults in brackets): PROJECT [gcloud's], ZONE [us-east5-b], TPU_NAME [dsmath-pod],
# ACCELERATOR [v5p-128], VERSION [v2-alpha-tpuv5], BUCKET [gs://YOUR_BUCKET/deepseekmath] (must match the
# config's BUCKET), SPOT [0] (1 = spot capacity), WORKDIR [the config's workdir].
# Every worker runs the same command with --config.distributed.coordinator_address=auto (added by `run`), so each
# calls jax.distributed.initialize() and JAX finds the other hosts; each host reads 1/process_count of every batch.
set -euo pipefail

ZONE="${ZONE:-us-east5-b}"
TPU_NAME="${TPU_NAME:-dsmath-pod}"
ACCELERATOR="${ACCELERATOR:-v5p-128}"
VERSION="${VERSION:-v2-alpha-tpuv5}"
BUCKET="${BUCKET:-gs://YOUR_BUCKET/deepseekmath}"
SPOT="${SPOT:-0}"
REMOTE_DIR="dsmath"
LOG="run.log"
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then PROJECT_FLAG=(--project="$PROJECT"); fi
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE" "${PROJECT_FLAG[@]}"; }
on_all() { tpu ssh "$TPU_NAME" --worker=all --command="$1"; }

cmd="${1:-}"; shift || true
case "$cmd" in
  create)
    extra=()
    if [[ "$SPOT" == "1" ]]; then extra+=(--spot); fi
    tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR" --version="$VERSION" "${extra[@]}"
    ;;
  setup)
    # Copy the checkout (no runs/, no .git) as a tarball, then install it with JAX's TPU wheels on every worker.
    tarball="$(mktemp -d)/dsmath.tar.gz"
    tar -C "$REPO_ROOT" --exclude=./runs --exclude=./.git --exclude='*.pyc' -czf "$tarball" .
    tpu scp "$tarball" "$TPU_NAME":dsmath.tar.gz --worker=all
    on_all "mkdir -p $REMOTE_DIR && tar -xzf dsmath.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && \
      python3 -m pip install -q -U pip && python3 -m pip install -q 'jax[tpu]' && python3 -m pip install -q -e ."
    ;;
  run)
    config="${1:?usage: $0 run configs/<name>.py [--config.key=value ...]}"; shift
    overrides="$*"
    # Multi-host: every worker must call jax.distributed.initialize() (dsmath.train.distributed); "auto" lets JAX
    # find the coordinator and the process ids from the TPU metadata. Added unless the caller sets it.
    if [[ "$overrides" != *"distributed.coordinator_address"* ]]; then
      overrides="$overrides --config.distributed.coordinator_address=auto"
    fi
    # nohup + background: the job survives the ssh session; every worker writes its own ~/run.log.
    on_all "cd $REMOTE_DIR && nohup python3 -m experiments.run --config $config $overrides \
      ${WORKDIR:+--workdir $WORKDIR} > ~/$LOG 2>&1 &"
    echo "started on all workers of $TPU_NAME; follow with: $0 logs"
    ;;
  logs)
    tpu ssh "$TPU_NAME" --worker=0 --command="tail -n 50 -f ~/$LOG"
    ;;
  collect)
    dest="${1:-runs/$TPU_NAME-logs}"
    mkdir -p "$dest"
    n_workers=$(tpu describe "$TPU_NAME" --format='value(networkEndpoints.len())' 2>/dev/null || echo 1)
    for ((w = 0; w < n_workers; w++)); do
      tpu scp "$TPU_NAME":"$LOG" "$dest/worker$w.log" --worker="$w" || echo "worker $w: no log"
    done
    # Checkpoints, metrics.jsonl, tb/ and summary.json are already in the config's gs:// workdir.
    gsutil -m cp -r "${WORKDIR:-$BUCKET/runs}/**/summary.json" "$dest/" 2>/dev/null || true
    echo "logs in $dest; checkpoints and metrics: gsutil ls ${WORKDIR:-$BUCKET/runs}"
    ;;
  delete)
    tpu delete "$TPU_NAME" --quiet
    ;;
  *)
    sed -n '2,19p' "$0"
    exit 2
    ;;
esac
