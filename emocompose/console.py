"""What the CLI shows on a terminal: progress bars, and the tables of `analyze` and `evaluate`.
Everything here goes to stderr except analyze's table, which is the command's output."""

from __future__ import annotations


def stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(msg: str) -> None:
    stderr().print(msg)


def progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=stderr(), transient=False,
    )  # fmt: skip


def print_analysis(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=info["file"], show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("bars", str(info["bars"]))
    t.add_row("key", info["key"])
    t.add_row("notes", str(info["notes"]))
    t.add_row("notes per beat", f"{info['notes_per_beat']:.2f}")
    t.add_row("mean velocity", f"{info['mean_velocity']:.1f}")
    t.add_row("tempo", f"{info['tempo_bpm']:.0f} BPM")
    t.add_row("pitch range", f"{info['pitch_range']} semitones ({info['lowest']}-{info['highest']})")
    keys, runs = info["bar_keys"], []
    for i, k in enumerate(keys):  # runs of equal keys read better than one key per bar
        if runs and runs[-1][2] == k:
            runs[-1][1] = i + 1
        else:
            runs.append([i + 1, i + 1, k])
    t.add_row("bar keys", ", ".join(f"{a}-{b}: {k}" if a != b else f"{a}: {k}" for a, b, k in runs))
    Console().print(t)


def train_record(rec: dict) -> str:
    """One line for a record of the training log."""
    if "loss" in rec:
        return (f"loss {rec['loss']:.3f} rec {rec['rec']:.3f} kl {rec['kl']:.2f} cls {rec['cls']:.3f} "
                f"f_r {rec['f_r']:.3f} f_k {rec['f_k']:.3f} | {rec['tokens_per_s']:.0f} tok/s"
                + (f" MFU {rec['mfu']:.0%}" if "mfu" in rec else ""))  # fmt: skip
    if "precision" in rec:
        return f"training from step {rec['step']} on {rec['world']} {rec['device']} process(es) in {rec['precision']}"
    return f"step {rec['step']} (epoch {rec.get('epoch')}): " + ", ".join(f"{k} {v}" for k, v in rec.items() if k.startswith("val"))


def print_report(r: dict, out: str) -> None:
    """evaluate's summary table: each figure beside what real music (judged the same way) scores."""
    from rich.table import Table

    def avq(x: dict, key: str = "accuracy") -> str:
        q = f" / {x['quadrant_accuracy']:.2f}" if key == "accuracy" else ""
        return f"{x['arousal'][key]:.2f} / {x['valence'][key]:.2f}{q}"

    s = r["settings"]
    n = s.get("candidates") or 1
    how = "the paper's operations" if s.get("paper") else ("one decoding each" if n == 1 else f"best of {n} decodings")
    t = Table(title=f"evaluate {r['model']} (step {r.get('model_step')}; {how})", title_justify="left")
    t.add_column("measure")
    t.add_column("model", justify="right")
    t.add_column("real music", justify="right")
    ceiling = r["judge"]["test"]
    c = r["control"]
    t.add_row("generate: accuracy arousal / valence / quadrant", avq(c), avq(ceiling))
    t.add_row("generate: F1 arousal / valence", avq(c, "f1"), avq(ceiling, "f1"))
    if c.get("key_heard_as_asked") is not None:
        t.add_row("generate: heard in the key written toward / in its mode",
                  f"{c['key_heard_as_asked']:.2f} / {c['mode_heard_as_asked']:.2f}", "")  # fmt: skip
    for spec, rows in r["trajectories"]["each"].items():
        t.add_row(f"emotions over time, {spec}: each segment heard as asked",
                  " -> ".join(f"{x['quadrant_accuracy']:.2f}" for x in rows), "")  # fmt: skip
    tr = r["transform"]
    if tr["clips"]:
        t.add_row("transform (lambda 1): judged as the target", f"{tr['reached_target']:.2f}", "")
        by = [tr["told_from_real_by_change"][k] for k in ("valence", "arousal", "both")]
        if by[0]["accuracy"] is not None:
            t.add_row("  told from real train clips, changing valence / arousal / both",
                      " / ".join(f"{m['accuracy']:.2f}" for m in by),
                      " / ".join(f"{m['real_against_real']:.2f}" for m in by) + " (the sources)")  # fmt: skip
        lam = tr["lambda"]
        t.add_row(f"  toward the opposite, lambda {' '.join(f'{x:g}' for x in lam['values'])}",
                  " ".join(f"{x:.2f}" for x in lam["reached_opposite"]), "")  # fmt: skip
        t.add_row("  its rhythm cosine to the source", " ".join(f"{x:.2f}" for x in lam["rhythm_to_source"]), "")
        for way, m in r["rewrites"]["ways"].items():
            t.add_row(f"  {way}: melody kept, lambda 0 / 1; reached at 1",
                      f"{m['melody_kept'][0]:.2f} / {m['melody_kept'][-1]:.2f}; {m['reached_opposite'][-1]:.2f}", "")
            t.add_row(f"  {way}: pitch classes / onsets like the source, lambda 0",
                      f"{m['pitch_class_similarity'][0]:.2f} / {m['onset_similarity'][0]:.2f}", "")
            if m["realism"]["accuracy"] is not None:
                t.add_row(f"  {way}: told from real train clips, every lambda; at each",
                          f"{m['realism']['accuracy']:.2f}; {' '.join(f'{x:.2f}' for x in m['realism']['by_lambda'])}",
                          f"{m['realism']['real_against_real']:.2f} (the sources)")  # fmt: skip
    for way, by in r["scores"]["means"].items() if r["scores"]["scores"] else ():
        t.add_row(f"scores ({len(r['scores']['scores'])}), {way}: melody kept / notes, lambda 0; 1",
                  "; ".join(f"{m['melody_kept']:.2f} / x{m['notes_ratio']:.2f}" for m in by.values()), "")
    for feature, s in r["swap"].items():
        if not s["pairs"]:
            continue
        t.add_row(f"swap {feature}: rhythm cosine to A / B", f"{s['rhythm_to_a']:.2f} / {s['rhythm_to_b']:.2f}", "")
        t.add_row(f"swap {feature}: key cosine to A / B; B's key heard", f"{s['key_to_a']:.2f} / {s['key_to_b']:.2f}; "
                  f"{s['key_heard_b']:.2f}", "")  # fmt: skip
    d = r["disentanglement"]
    t.add_row("probe: rhythm from z_r / from z_k", f"{d['rhythm_from_z_r']:.2f} / {d['rhythm_from_z_k']:.2f}",
              f"chance {d['rhythm_chance']:.2f}")  # fmt: skip
    t.add_row("probe: key from z_k / from z_r", f"{d['key_from_z_k']:.2f} / {d['key_from_z_r']:.2f}",
              f"chance {d['key_chance']:.2f}")  # fmt: skip
    q = r["latent"]["model_q_accuracy"]
    t.add_row("model's q(y|x): arousal / valence", f"{q['arousal']:.2f} / {q['valence']:.2f}", "")
    rl = r["realism"]
    t.add_row(f"realism: generated told from real test clips (0.5: cannot; {rl['pieces']} each)",
              f"{rl['accuracy']:.2f}", f"{rl['real_against_real']:.2f} (train clips)")  # fmt: skip
    t.add_row("  the same without where onsets fall on the 16th grid", f"{rl['accuracy_without_grid_style']:.2f}", "")
    t.add_row(f"  mean overlapping area of {len(rl['features'])} structure features",
              f"{rl['mean_overlapping_area']:.2f}", "1.00")  # fmt: skip
    for name in rl["most_telling"][:3]:
        f = rl["features"][name]
        t.add_row(f"  {name.replace('_', ' ')}", f"{f['generated']:.2f}", f"{f['real']:.2f}")
    for k, v in r["quality"]["generated"].items():
        real = r["quality"]["real"][k]
        t.add_row(k.replace("_", " "), "-" if v["mean"] is None else f"{v['mean']:.3f}", f"{real['mean']:.3f}")
    stderr().print(t)
    say(f"real music: the judge on {r['judge']['tested_on']} test clips (split: {r['judge']['split']})")
    say(f"wrote [bold]{out}/report.json[/], figures and samples/ in {r['seconds']['total']:.0f} s")
