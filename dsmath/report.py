"""The recipe's final report: Markdown with PNG plots, built only from the stage outputs on disk."""
import json
from pathlib import Path

from dsmath.files import write_text_atomic
from dsmath.runs import provenance_markdown

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

METRIC_FILES = ("metrics.jsonl",)


def read_jsonl(path: Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _series(rows: list[dict], key: str) -> tuple[list, list]:
  pts = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
  return [p[0] for p in pts], [p[1] for p in pts]


def _corpus_section(summary: dict) -> list[str]:
  out = ["| round | pages collected | overlap with previous | new math domains | new positives |",
         "|---:|---:|---:|---:|---:|"]
  for r in summary.get("rounds", []):
    overlap = r.get("overlap_with_previous")
    out.append(f"| {r['round']} | {r['pages_collected']} | {'-' if overlap is None else f'{overlap:.1%}'} | "
               f"{len(r.get('new_domains', []))} | {r.get('new_positives', 0)} |")
  out.append("")
  out.append(f"Stop reason: {summary.get('stop_reason')}. Decontamination: "
             f"{json.dumps(summary.get('decontam', {}), default=str)[:400]}")
  return out


def _plot_curves(run_dir: Path, stages: list[str], key: str, path: Path, title: str) -> bool:
  fig, ax = plt.subplots(figsize=(6, 3.5))
  drawn = False
  for name in stages:
    for fname in METRIC_FILES:
      x, y = _series(read_jsonl(run_dir / name / fname), key)
      if x:
        ax.plot(x, y, label=name)
        drawn = True
  if drawn:
    ax.set_xlabel("step"), ax.set_ylabel(key), ax.set_title(title), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
  plt.close(fig)
  return drawn


def _smooth(y: list, window: int) -> list:
  """Trailing moving average (the first points average what there is)."""
  out, total = [], 0.0
  for i, v in enumerate(y):
    total += v
    if i >= window:
      total -= y[i - window]
    out.append(total / min(i + 1, window))
  return out


def _rl_section(stage_dir: Path, out_dir: Path, name: str, summary: dict) -> list[str]:
  """An RL stage (its run directory `stage_dir`; plots go to `out_dir`): its reward curve (raw and smoothed),
  held-out accuracy over RL steps, the paired gains; with a learned reward also the over-optimisation curve (the
  reward model's score of the rollouts beside the rule grader's accuracy of the same rollouts) and, for a process
  reward, the mean step score by step position."""
  rows = read_jsonl(stage_dir / "metrics.jsonl")
  steps = [r for r in rows if "reward_mean" in r]
  evals = [r for r in rows if r.get("evaluation")]
  out = ["", f"## RL stage `{name}`: {summary.get('method')} (reward {summary.get('reward')!r}, estimator "
             f"{summary.get('estimator')!r}, loss {summary.get('policy_loss')!r})", ""]
  if steps:
    x = [r["step"] for r in steps]
    window = max(1, len(x) // 10)
    keys = {k for r in steps for k in r}
    proxy = "proxy_reward_mean" in keys
    positions = sorted(k for k in keys if k.startswith("step_reward_pos")) + (
        ["step_reward_last"] if "step_reward_last" in keys else [])
    panels = 2 + proxy + bool(positions)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5))
    for key, label in (("reward_mean", "training reward"), ("accuracy", "rule accuracy")):
      y = [r[key] for r in steps]
      axes[0].plot(x, y, alpha=0.3, label=f"{label} (per step)")
      axes[0].plot(x, _smooth(y, window), label=f"{label} ({window}-step mean)")
    axes[0].set_xlabel("RL step"), axes[0].set_title("training rollouts (sampled at the rollout temperature)")
    for key, label in (("test_accuracy_greedy", "greedy"), ("test_accuracy_sampled", "sampled")):
      pts = [(r["step"], r[key]) for r in evals if key in r]
      if pts:
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    axes[1].set_xlabel("RL step"), axes[1].set_title("held-out accuracy")
    if proxy:
      ax = axes[2]
      for key, label in (("proxy_reward_mean", "learned reward (proxy)"), ("accuracy", "rule accuracy")):
        ax.plot(x, _smooth([r.get(key, float("nan")) for r in steps], window), label=f"{label} ({window}-step mean)")
      for sp in summary.get("overoptimisation", {}).get("spans", []):
        ax.axvspan(sp["start"], sp["end"], color="red", alpha=0.15)
      ax.set_xlabel("RL step"), ax.set_title("over-optimisation: the same rollouts, two judges")
    if positions:
      ax = axes[-1]
      for key in positions:
        y = [r.get(key, float("nan")) for r in steps]
        ax.plot(x, _smooth(y, window), label=key.replace("step_reward_", "step "))
      ax.set_xlabel("RL step"), ax.set_title("process reward by step position")
    for ax in axes:
      ax.grid(alpha=0.3)
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = out_dir / f"rl_{name}.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    out += [f"![RL curves of {name}]({png.name})", ""]
  over = summary.get("overoptimisation")
  if over:
    out += [f"Learned reward vs rule accuracy of the rollouts (means of the first / last {over['window']} steps): "
            f"proxy {over['proxy_first']:.3f} -> {over['proxy_last']:.3f}, rule accuracy {over['rule_first']:.3f} -> "
            f"{over['rule_last']:.3f}.", ""]
    if over["spans"]:
      out += ["**Reward hacking**: the learned reward rose while the rule accuracy of the same rollouts fell over "
              + "; ".join(f"steps {sp['start']}-{sp['end']} (proxy {sp['proxy_before']:.3f} -> "
                          f"{sp['proxy_after']:.3f}, rule {sp['rule_before']:.3f} -> {sp['rule_after']:.3f})"
                          for sp in over["spans"]) + ".", ""]
    else:
      out += ["No span where the learned reward rose while the rule accuracy fell.", ""]
  gains = [(k, summary.get(f"test_accuracy_{k}_before"), summary.get(f"test_accuracy_{k}_after"),
            summary.get(f"test_accuracy_{k}_gain")) for k in ("greedy", "sampled")]
  gains = [g for g in gains if g[1] is not None and g[2] is not None and isinstance(g[3], dict)]
  if gains:
    out += ["| held-out accuracy | before RL | after RL | paired gain | 95% interval | questions |",
            "|---|---:|---:|---:|---|---:|"]
    for k, before, after, gain in gains:
      ci = gain.get("gain_ci95", [float("nan")] * 2)
      out.append(f"| {k} | {before:.3f} | {after:.3f} | {gain['gain']:+.3f} | [{ci[0]:+.3f}, {ci[1]:+.3f}] | "
                 f"{gain.get('n', '')} |")
  return out


def write_rl_report(stage_dir, summary: dict) -> Path:
  """<stage_dir>/report.md (+ its PNG) of one RL stage run alone, from its metrics.jsonl and summary."""
  stage_dir = Path(stage_dir)
  lines = ["# dsmath RL report", "", f"Run directory: `{stage_dir}`; status {summary.get('status')}, "
           f"{summary.get('steps')} of {summary.get('total_steps')} steps."]
  lines += _rl_section(stage_dir, stage_dir, "rl", summary)
  rm = summary.get("reward_model")
  if rm:
    lines += ["", "Reward model label accuracy on held-out samples, per round: "
              + ", ".join(f"{a:.3f}" for a in rm["heldout_label_accuracy"]) + "."]
  path = stage_dir / "report.md"
  write_text_atomic(path, "\n".join(lines) + "\n")
  return path


def _plot_pass_maj(curves: dict, path: Path, benchmark: str):
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
  for label, summary in curves.items():
    for ax, metric in zip(axes, ("maj", "pass")):
      ks = sorted(int(k.split("@")[1]) for k in summary if k.startswith(f"{metric}@") and "_ci" not in k)
      ax.plot(ks, [summary[f"{metric}@{k}"] for k in ks], marker="o", label=label)
      ax.set_xscale("log", base=2), ax.set_xlabel("K"), ax.set_title(f"{metric.capitalize()}@K ({benchmark})")
      ax.grid(alpha=0.3), ax.legend()
  axes[0].set_ylabel("accuracy")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_recipe_report(config, run_dir: str, summaries: dict, timings: dict) -> Path:
  """<run>/report.md (+ PNGs): stage timings, corpus rounds, loss and reward curves, held-out accuracy per stage,
  Pass@K / Maj@K of the models named in config.report, and the provenance of the numbers (the code version each
  stage ran at, from its summary). `config`: the resolved dsmath.recipe.RecipeConfig."""
  run = Path(run_dir)
  rep = config.report
  jobs = {name: config.stages[name]["job"] for name in config.stage_order}
  lines = ["# dsmath recipe report", "", f"Run directory: `{run}`", "", "## Stages", "",
           "| stage | job | seconds |", "|---|---|---:|"]
  for name in config.stage_order:
    lines.append(f"| {name} | {jobs[name]} | {timings.get(name, 0.0):.0f} |")
  for name in config.stage_order:
    if jobs[name] == "corpus":
      lines += ["", f"## Corpus mining ({name})", ""] + _corpus_section(summaries[name])
  lines += ["", "## Training curves", ""]
  # LM loss for the next-token stages; the RL stages' mean reward (their surrogate loss is not comparable).
  for stage_jobs, key, title in ((("pretrain", "sft"), "loss", "next-token loss"),
                           (("rl",), "reward_mean", "mean reward per RL step")):
    png = run / f"curve_{key}.png"
    if _plot_curves(run, [n for n in config.stage_order if jobs[n] in stage_jobs], key, png, title):
      lines.append(f"![{title}]({png.name})")
  for name in config.stage_order:
    if jobs[name] == "rl" and isinstance(summaries.get(name), dict):
      lines += _rl_section(run / name, run, name, summaries[name])
  accuracy = rep.accuracy
  if accuracy:
    lines += ["", "## Held-out accuracy after each stage", "", "| after | benchmark | accuracy | 95% CI | n |",
              "|---|---|---:|---|---:|"]
    for label, stage in accuracy:
      for bench, s in summaries.get(stage, {}).items():
        if isinstance(s, dict) and "accuracy" in s:
          ci = s.get("accuracy_ci95", [None, None])
          lines.append(f"| {label} | {bench} | {s['accuracy']:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | "
                       f"{s['num_problems']} |")
  pass_maj = rep.pass_maj
  if pass_maj:
    curves_by_bench: dict = {}
    for label, stage in pass_maj:
      for bench, s in summaries.get(stage, {}).items():
        if isinstance(s, dict) and any(k.startswith("pass@") for k in s):
          curves_by_bench.setdefault(bench, {})[label] = s
    lines += ["", "## Pass@K and Maj@K (the paper's Figure 7 at toy scale)", ""]
    for bench, curves in curves_by_bench.items():
      png = run / f"pass_maj_{bench}.png"
      _plot_pass_maj(curves, png, bench)
      ks = sorted(int(k.split("@")[1]) for k in next(iter(curves.values())) if k.startswith("pass@") and "_ci" not in k)
      lines += [f"![Pass@K and Maj@K on {bench}]({png.name})", "",
                "| model | " + " | ".join(f"pass@{k}" for k in ks) + " | " + " | ".join(f"maj@{k}" for k in ks) + " |",
                "|---|" + "---:|" * (2 * len(ks))]
      for label, s in curves.items():
        lines.append(f"| {label} | " + " | ".join(f"{s[f'pass@{k}']:.3f}" for k in ks) + " | " +
                     " | ".join(f"{s[f'maj@{k}']:.3f}" for k in ks) + " |")
  lines += provenance_markdown()
  commits = {(s["provenance"]["commit"], s["provenance"]["dirty"]): None for s in summaries.values()
             if isinstance(s.get("provenance"), dict)}
  lines.append("- stages ran at: " + "; ".join(f"`{c}`{' (dirty tree)' if d else ''}" for c, d in commits))
  path = run / "report.md"
  write_text_atomic(path, "\n".join(lines) + "\n")
  return path
