r"""The L-DUFM studies behind the figures of Súkeník, Lampert & Mondelli (NeurIPS 2024,
arXiv 2405.14468): one settings object per study, read by the scenario
(``scenarios/ldufm_*.py``) and by the figure (``python -m svflow.figures``).

Every study has a QUICK setting (minutes on one CPU core) and a FULL setting
(the paper's sizes where known); the optimality map also has a MEDIUM
setting, the largest that runs in about ten minutes on one core. ``paper``
names the figure reproduced, ``fixed`` the settings the paper states (as far
as our summary of it goes) and ``chosen`` the settings it leaves open and
svflow chose (samples per class n, init scale, width where not given, ...);
the figures print both.

Conventions: depth L = number of weight matrices (N = L + 1 factors), the
same weight decay on H and every $W_l$, time t = steps x learning rate,
mean-reduced squared loss $\frac{1}{2Kn}\|Z - Y\|_F^2$.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._checks import check_choice
from ._ldufm import ldufm_sweep
from ._ldufm_map import ldufm_optimality_map
from ._maps import srg_construction_layers, srg_ratio_curve

__all__ = ["LdufmStudy", "LDUFM_STUDIES", "ldufm_study", "ldufm_scale_sweep"]


def ldufm_scale_sweep(scales, *, classes=None, progress: bool = False, **kwargs) -> xr.Dataset:
    """:func:`svflow.explicit.ldufm_sweep` over the init scale (dim ``scale``), and over
    ``classes`` too when a sequence of class counts is given (dims ``scale``,
    ``classes``); ``progress``: :func:`~svflow.explicit.ldufm_sweep`'s bars."""
    if classes is None or np.ndim(classes) == 0:
        if classes is not None:
            kwargs["classes"] = classes
        return ldufm_sweep("scale", tuple(scales), progress=progress, **kwargs)
    parts = [ldufm_sweep("classes", tuple(classes), scale=s, progress=progress, **kwargs) for s in scales]
    for p in parts:
        p.attrs.pop("init_scale", None)
    out = xr.concat(parts, dim="scale", combine_attrs="drop_conflicts")
    return out.assign_coords(scale=np.asarray(scales, float))


@dataclass(frozen=True)
class LdufmStudy:
    """One study: what it reproduces, its settings and the function that runs it."""

    name: str
    paper: str  # the paper figure reproduced
    function: Callable
    quick: dict
    full: dict
    fixed: str  # settings the paper states
    chosen: str  # settings the paper leaves open, chosen here
    extra: dict = field(default_factory=dict)  # further named settings
    common: dict = field(default_factory=dict)  # keyword arguments every setting shares

    def settings(self, setting: str) -> dict:
        """The keyword arguments of ``function`` at ``setting``: ``common`` updated by
        the setting's own values."""
        names = ("quick", "full", *self.extra)
        setting = check_choice("setting", setting, names)
        own = getattr(self, setting) if setting in ("quick", "full") else self.extra[setting]
        return {**self.common, **own}

    def compute(self, setting: str = "quick", progress: bool = False) -> xr.Dataset:
        """Run the study at ``setting`` ("quick", "full" or an extra setting's name);
        ``progress``: the study function's progress bar, where it has one."""
        kwargs = self.settings(setting)
        if progress and "progress" in inspect.signature(self.function).parameters:
            kwargs["progress"] = True
        ds = self.function(**kwargs)
        ds.attrs.update(
            study=self.name,
            paper_figure=self.paper,
            paper_settings=self.fixed,
            chosen_settings=self.chosen,
            setting=setting,
        )
        return ds


_GD = dict(depth=4, weight_decay=0.004, eta=0.5)
_FIG2_FIXED = "K = 10, L = 4, weight decay 0.004 on every factor, width 30, learning rate 0.5"

LDUFM_STUDIES: dict[str, LdufmStudy] = {
    s.name: s
    for s in [
        LdufmStudy(
            "ldufm_fig1",
            "Fig. 1",
            srg_construction_layers,
            quick=dict(r=5, depth=4),
            full=dict(r=5, depth=4),
            fixed="SRG construction, K = C(r, 2) = 10 classes (r = 5), L = 4",
            chosen="unit scale (before the common rescaling); n = 1",
        ),
        LdufmStudy(
            "ldufm_fig2",
            "Fig. 2",
            ldufm_scale_sweep,
            common=dict(classes=10, width=30, samples=5, **_GD),
            quick=dict(scales=(0.55, 1.0, 1.5), steps=50_000, seeds=(0, 1), num_times=41, kinks=False),
            # full: 2e5 steps (t = 1e5; the objective of the earlier 1e6-step run was flat
            # after t = 3e4) and no init scale 0.55, to fit about 15 minutes of 2 shared cores.
            # No kink stage: the figure draws GD alone, and at n = 5 the stage's face Newton
            # solves 5835-unknown systems (30 s each on one core); svflow 0.5.5's full run
            # was still in the stage of its third stalled run after an hour
            # (benchmarks/RESULTS.md section 18). The L-BFGS polish and its Clarke gap stay.
            full=dict(scales=(1.0, 1.5), steps=200_000, seeds=tuple(range(10)), num_times=51, kinks=False),
            fixed=_FIG2_FIXED + " (the paper shows 10 runs)",
            chosen="n = 5 samples per class (NC1 needs n > 1); init scales 1.0 and 1.5, "
            "and 0.55 in the quick setting only (2 seeds per scale there; the legend counts "
            "the runs that end in DNC) (Gaussian entries of variance scale^2/width: at n = 5 the "
            "start's class means are sqrt(5) smaller than at n = 1); L-BFGS polish without the kink stage",
        ),
        LdufmStudy(
            "ldufm_fig3_left",
            "Fig. 3 (left)",
            srg_ratio_curve,
            common=dict(radii=tuple(range(4, 13)), depths=(3, 4, 5), lams=(0.001, 0.004, 0.016)),
            quick=dict(network=False),
            full=dict(network=True),
            fixed="L_SRG / L_DNC against r for L = 3, 4, 5, K = C(r, 2)",
            chosen="weight decay 0.001, 0.004, 0.016 on every factor; n = 1",
        ),
        LdufmStudy(
            "ldufm_fig3_middle",
            "Fig. 3 (middle)",
            ldufm_sweep,
            common=dict(
                param="lam",  # weight_decay by its alias: the dataset dim the figure reads
                values=(0.001, 0.002, 0.004, 0.008, 0.016),
                classes=10,
                depth=4,
                width=30,
                eta=0.5,
                samples=1,
                scale=1.0,
            ),
            quick=dict(steps=50_000, seeds=(0, 1), num_times=21, kinks=False),
            # no kink stage: the figure draws GD alone, and the stage would take about 2.5 CPU
            # hours of the figure's 5 columns (RESULTS section 18); its weight decay 0.004
            # column with the stage is Fig. 3 (right)'s width 30 column
            full=dict(steps=200_000, seeds=tuple(range(10)), num_times=41, kinks=False),
            fixed="rank against weight decay, K = 10, L = 4, width 30, learning rate 0.5",
            chosen="n = 1; init scale 1.0; weight decays 0.001..0.016; L-BFGS polish without the kink stage",
        ),
        LdufmStudy(
            "ldufm_fig3_right",
            "Fig. 3 (right)",
            ldufm_sweep,
            common=dict(param="width", values=(10, 20, 30, 50, 80), classes=10, samples=1, scale=1.0, **_GD),
            quick=dict(steps=50_000, seeds=(0, 1), num_times=21, kinks=False),
            full=dict(steps=200_000, seeds=tuple(range(10)), num_times=41),
            fixed="fraction of runs ending in DNC against width, K = 10, L = 4, "
            "weight decay 0.004, learning rate 0.5",
            chosen="n = 1; init scale 1.0",
        ),
        LdufmStudy(
            "ldufm_fig5",
            "Fig. 5",
            ldufm_scale_sweep,
            common=dict(scales=(0.55, 1.0), classes=(3, 4, 5), width=16, samples=1, **_GD),
            quick=dict(steps=50_000, seeds=(0, 1, 2, 3), num_times=31, kinks=False),
            full=dict(steps=500_000, seeds=tuple(range(10)), num_times=51),
            fixed="low-rank solutions for K = 3, 4, 5 at L = 4",
            chosen="weight decay 0.004 and learning rate 0.5 (Fig. 2's); width 16; "
            "n = 1; init scales 0.55 and 1.0",
        ),
        LdufmStudy(
            "ldufm_fig6",
            "Fig. 6",
            ldufm_scale_sweep,
            common=dict(scales=(1.0,), classes=15, depth=7, weight_decay=0.004, eta=0.5, width=30, samples=1),
            quick=dict(steps=50_000, seeds=(0, 1, 2), num_times=31, kinks=False),
            full=dict(steps=500_000, seeds=tuple(range(10)), num_times=51),
            fixed="K = 15 at L = 7",
            chosen="weight decay 0.004, width 30, learning rate 0.5 (Fig. 2's); "
            "n = 1; init scale 1.0 (at 0.55 all 10 runs of svflow 0.1's full setting "
            "collapsed to the zero network, loss 1/2)",
        ),
        LdufmStudy(
            "ldufm_optimality",
            "none (svflow's empirical optimality map)",
            ldufm_optimality_map,
            common=dict(classes=tuple(range(2, 17)), depths=tuple(range(2, 7)), weight_decay=0.004, eta=0.5),
            # quick: K = 2..6, a short polish and no nonsmooth kink stage (the full
            # grid's L-BFGS polish of 75 cells took over 20 minutes of the main job;
            # the kink stage costs 40 s to 5 min per stalled run)
            quick=dict(
                classes=tuple(range(2, 7)),
                steps=10_000,
                scales=(0.55, 1.0),
                seeds=2,
                polish_steps=500,
                kinks=False,
            ),
            full=dict(steps=500_000, scales=(0.3, 0.55, 1.0, 1.5), seeds=10),
            extra=dict(
                medium=dict(steps=40_000, scales=(0.55, 1.0, 1.5), seeds=4),
                # the committed figure's map: every run L-BFGS polished, no kink stage
                # per run (the figure re-polishes each cell's best point with it)
                polished=dict(
                    classes=tuple(range(2, 7)),
                    steps=20_000,
                    scales=(0.55, 1.0),
                    seeds=12,
                    polish_steps=2000,
                    kinks=False,
                ),
            ),
            fixed="the paper's L-DUFM objective over a grid of K and L (L = 2..6; K = 2..16 in "
            "the full setting, K = 2..6 in the quick and polished settings)",
            chosen="weight decay 0.004 on every factor, learning rate 0.5, width max(16, 2K), n = 1",
        ),
    ]
}


def ldufm_study(name: str, setting: str = "quick") -> xr.Dataset:
    """Run the study ``name`` of :data:`LDUFM_STUDIES` at ``setting``."""
    name = check_choice("name", name, LDUFM_STUDIES)
    return LDUFM_STUDIES[name].compute(setting)


def study_main(name: str, summary, argv=None, doc: str | None = None) -> int:
    """Command line of a study's scenario: ``[--quick | --setting NAME] [--out PATH]``.

    Runs the study (:func:`svflow._cli.scenario_cli`: ``--out`` is checked
    before the run, the setting printed), prints ``summary(ds)`` and saves the
    dataset (netCDF) to ``--out`` when given."""
    from .._cli import scenario_cli
    from .._dataset import save

    study = LDUFM_STUDIES[check_choice("name", name, LDUFM_STUDIES)]
    settings = {n: study.settings(n) for n in ("quick", "full", *study.extra)}
    a, setting, _ = scenario_cli(
        doc,
        settings,
        argv,
        quick_help="the QUICK setting",
        header=f"{study.paper}: {study.fixed}\nchosen here: {study.chosen}",
    )
    ds = study.compute(setting)
    print(summary(ds))
    if a.out:
        save(ds, a.out)
        print("saved", a.out)
    return 0
