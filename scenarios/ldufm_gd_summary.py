"""Shared printout of the GD studies (Figs. 2, 3, 5, 6): not a scenario itself."""

from __future__ import annotations

import numpy as np


def runs_summary(ds) -> str:
    """Per run: final objective / L_DNC, ranks per layer, max NC1, DNC or not."""
    Ld = np.unique(np.ravel(ds["L_DNC"].values))
    lines = [
        f"L_DNC = {Ld[0]:.6f}" if Ld.size == 1 else "L_DNC differs per setting",
        "layers: " + " ".join(ds["layer"].values),
    ]
    outer = [d for d in ("lam", "weight_decay", "width", "scale", "classes") if d in ds.dims]
    stacked = ds.stack(run=outer + ["seed"]) if outer else ds.rename(seed="run")
    for i in range(stacked.sizes["run"]):
        d = stacked.isel(run=i)
        label = ", ".join(f"{k} {d[k].values.item():g}" for k in outer + (["seed"] if outer else []))
        if not outer:
            label = f"seed {int(d['run'])}"
        Ld = float(d["L_DNC"])
        K = int(d["classes"]) if "classes" in d.coords else int(ds.attrs["classes"])
        lines.append(
            f"{label}: final / L_DNC {float(d['final_objective']) / Ld:.4f}  "
            f"ranks {d['rank_layer'].values.astype(int).tolist()}  "
            f"max NC1 {float(d['nc1_layer'].max()):.1e}  DNC {bool(d['is_dnc'])}  "
            f"(K = {K})"
        )
    for d in outer:
        frac = ds["is_dnc"].mean([x for x in ds["is_dnc"].dims if x != d])
        lines.append(
            f"fraction ending in DNC per {d}: "
            + ", ".join(f"{v:g}: {f:.2f}" for v, f in zip(ds[d].values, frac.values))
        )
    return "\n".join(lines)
