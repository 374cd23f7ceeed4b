"""Sweeps of the variance penalty alpha and of the supervision rate rho on a reduced budget
(the paper's Figs 5-8): each setting trains a model from scratch (`--preset`, default mini) for
--steps, then `evaluate` judges it. Runs are resumable: rerun the same command to continue a
sweep that was stopped.

    python benchmarks/sweep.py --dataset data/all --steps 300 --out runs/sweep

Prints a table per swept option and writes OUT/sweep.json, sweep_alpha.png and sweep_rho.png.
Every run uses the same seed, data and budget; only the swept option differs (alpha runs keep
rho = 1, that is every labelled bar of EMOPIA train; rho runs keep alpha = 0.2, so the alpha =
0.2 run is also the rho = 1 point of the rho table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from emocompose.atomic import write_text

SETTINGS = [("alpha", 0.0), ("alpha", 0.2), ("alpha", 1.0), ("rho", 0.05), ("rho", 0.1), ("rho", 0.2)]
BASELINE = ("alpha", 0.2)  # alpha 0.2 and rho 1 are the defaults: one run serves both tables


def emocompose(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "emocompose", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--pieces", type=int, default=8, help="generated pieces per emotion in each evaluation")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    rows = []
    for option, value in SETTINGS:
        run = args.out / f"{option}-{value:g}"
        train = ["train", str(args.dataset), "--out", str(run), "--steps", str(args.steps), f"--{option}", str(value),
                 "--kl-warmup", str(args.steps // 4), "--checkpoint-every", "50", "--threads", str(args.threads),
                 "--preset", args.preset]  # fmt: skip
        if (run / "train_state.safetensors").exists():
            train.append("--resume")
        emocompose(*train)
        report = run / "report" / "report.json"
        if not report.exists() or json.loads(report.read_text()).get("model_step") != args.steps:
            emocompose("evaluate", "--data", str(args.dataset), "--model", str(run / "model.safetensors"),
                       "--out", str(run / "report"), "--pieces", str(args.pieces), "--clips", "0")  # fmt: skip
        r = json.loads(report.read_text())
        rows.append({
            "option": option, "value": value,
            "generate_arousal": r["control"]["arousal"]["accuracy"], "generate_valence": r["control"]["valence"]["accuracy"],
            "q_arousal": r["latent"]["model_q_accuracy"]["arousal"], "q_valence": r["latent"]["model_q_accuracy"]["valence"],
            "means_apart_z_r": r["latent"]["component_means"]["z_r"]["in_stds"],
            "means_apart_z_k": r["latent"]["component_means"]["z_k"]["in_stds"],
        })  # fmt: skip
        if (option, value) == BASELINE:
            rows.append({**rows[-1], "option": "rho", "value": 1.0})
    write_text(args.out / "sweep.json", json.dumps(rows, indent=1) + "\n")
    keys = [k for k in rows[0] if k not in ("option", "value")]
    for option in ("alpha", "rho"):
        print(f"\n| {option} | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
        for row in sorted((r for r in rows if r["option"] == option), key=lambda r: r["value"]):
            print(f"| {row['value']:g} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")

    from emocompose.figures import curves

    for option in ("alpha", "rho"):
        sel = sorted((r for r in rows if r["option"] == option), key=lambda r: r["value"])
        curves([r["value"] for r in sel], {name: [r[name] for r in sel] for name in
                                           ("generate_arousal", "generate_valence", "q_arousal", "q_valence")},
               option, "accuracy", f"{option} sweep, {args.steps} steps of {args.preset}", args.out / f"sweep_{option}.png",
               log_x=option == "rho")  # fmt: skip


if __name__ == "__main__":
    main()
