"""L-DUFM studies: NC1 over training, the Fig. 3-left curve, the optimality map.

Routes: a single uninterrupted ``train`` call against the recorded runs; the
built SRG / DNC matrices run through the ReLU network against the closed forms;
the numpy network objective of the returned factors against L_DNC.
"""

from __future__ import annotations

import numpy as np
import pytest

import svflow
from svflow.explicit import construction_loss, dnc_factors, srg_factors

LAM = 0.004


def _single_run(K, L, *, width, samples, scale, seed, steps, eta=0.5):
    """The old route: one train call, layer statistics of the final factors only."""
    model = svflow.random_model(
        K,
        depth=L,
        width=width,
        scale=scale,
        key=seed,
        samples_per_class=samples,
        activation="relu",
        loss="squared",
        weight_decay=LAM,
    )
    _, model = svflow.train(model, eta=eta, steps=steps, num_times=2, return_model=True, progress=False)
    names, mats = svflow.explicit.layer_representations(model.factors)
    return float(model.objective(model.factors)), names, mats


def test_nc1_over_training_matches_single_run_at_the_end():
    """Recording NC1 on the log grid (GD split into segments) ends where one
    uninterrupted train call ends: same objective, same NC1 per layer from the
    existing ``nc1`` function on the final layers. Short run: NC1 still O(1e-2)."""
    kw = dict(width=12, samples=3, scale=1.0)
    ds = svflow.explicit.ldufm_runs(4, 3, steps=1000, seeds=(1,), num_times=12, lam=LAM, **kw)
    obj, names, mats = _single_run(4, 3, seed=1, steps=1000, **kw)
    assert list(ds["layer"].values) == names
    assert ds["objective"].values[0, -1] == pytest.approx(obj, rel=1e-10)
    ref = np.array([svflow.explicit.nc1(X, 4) for X in mats])
    assert ref.max() > 1e-3  # not yet collapsed: a meaningful comparison
    np.testing.assert_allclose(ds["nc1_layer_t"].values[0, -1], ref, rtol=1e-6)
    np.testing.assert_allclose(ds["nc1_layer"].values[0], ref, rtol=1e-6)
    # time-resolved ranks end at the final ranks
    np.testing.assert_array_equal(ds["rank_layer_t"].values[0, -1], ds["rank_layer"].values[0])


def test_nc1_non_increasing_after_the_loss_plateau():
    """Seed 1 of this small L-DUFM reaches L_DNC; from the record where the objective
    is within 1e-3 of its final value on, NC1 of every layer does not increase and
    falls below 1e-6 (within-class collapse)."""
    ds = svflow.explicit.ldufm_runs(
        4, 3, width=12, samples=3, scale=1.0, steps=20_000, seeds=(1,), num_times=31
    )
    obj = ds["objective"].values[0]
    assert obj[-1] == pytest.approx(float(ds["L_DNC"]), rel=1e-3)
    start = int(np.argmax(np.abs(obj - obj[-1]) <= 1e-3 * obj[-1]))
    assert start < len(obj) - 3  # a plateau of several records
    nc = ds["nc1_layer_t"].values[0, start:]  # (time, layer)
    assert np.all(np.diff(nc, axis=0) <= 1e-12 + 1e-9 * nc[:-1])
    assert nc[-1].max() < 1e-6
    assert nc[0].max() > 10 * nc[-1].max()  # it did fall over the plateau


def _check_fig3_left(radii, depths):
    ds = svflow.explicit.srg_ratio_curve(radii, depths, (LAM,))
    kw = dict(lam_H=LAM, lam_W=LAM)
    for L in depths:
        for r in radii:
            K = r * (r - 1) // 2
            got = float(ds["ratio"].sel(lam=LAM, depth=L, r=r))
            closed = svflow.explicit.srg_loss(K, L, r=r, **kw) / svflow.explicit.dnc_loss(K, L, **kw)
            assert got == pytest.approx(closed, rel=1e-12)
            net = (
                construction_loss(srg_factors(r, L), **kw)[0] / construction_loss(dnc_factors(K, L), **kw)[0]
            )
            assert got == pytest.approx(net, rel=1e-7)


def test_fig3_left_curve_two_routes():
    """The Fig. 3-left ratio equals srg_loss / dnc_loss at every r, and the same
    ratio from the built matrices run through the ReLU network at their best
    balanced scale (construction_loss). r = 4, 5 at L = 4."""
    _check_fig3_left((4, 5), (4,))


@pytest.mark.slow
def test_fig3_left_curve_two_routes_every_depth():
    """As above for r = 4, 5, 6 and L = 3, 4, 5 (the depths of the figure)."""
    _check_fig3_left((4, 5, 6), (3, 4, 5))


def test_srg_construction_layers_ranks():
    """Fig. 1: M3 has rank r, the pre-activation of M4 (J - B^T B) rank r, M4 (the
    Kneser adjacency, its ReLU) rank K, the output Z = I."""
    ds = svflow.explicit.srg_construction_layers(5, 4)
    rank = ds["matrix_rank"]
    assert int(rank.sel(layer="M3")) == 5
    assert int(rank.sel(layer="pre-M4")) == 5
    assert int(rank.sel(layer="M4")) == 10
    B = svflow.explicit.srg_matrices(5)
    np.testing.assert_allclose(ds["matrix"].sel(layer="pre-M4").values, B.pre, atol=1e-12)
    np.testing.assert_allclose(ds["matrix"].sel(layer="M4").values, B.kneser, atol=1e-12)
    np.testing.assert_allclose(ds["matrix"].sel(layer="Z").values, np.eye(10), atol=1e-9)
    # Gram matrices: B^T B of the incidence matrix (2 on the diagonal, 1 for edges
    # sharing a vertex, 0 otherwise) against the DNC contrast (diagonal, rank K)
    inc = np.zeros((5, 10))
    for e, (a, b) in enumerate((a, b) for a in range(5) for b in range(a + 1, 5)):
        inc[a, e] = inc[b, e] = 1.0
    gram = ds["gram"].sel(layer="M3").values
    np.testing.assert_allclose(gram / gram[0, 0], inc.T @ inc / 2.0, atol=1e-12)
    for name in ds["layer"].values:
        g = ds["dnc_gram"].sel(layer=name).values
        np.testing.assert_allclose(g - np.diag(np.diag(g)), 0.0, atol=1e-12)
        assert int(ds["dnc_rank"].sel(layer=name)) == 10


def test_gd_batch_equals_train():
    """The vmapped GD loop of the map makes the run train makes from the same start."""
    kw = dict(width=12, samples=1, scale=0.8)
    obj, _, _ = _single_run(4, 3, seed=2, steps=2000, **kw)
    _, o = svflow.explicit.ldufm_gd_batch(
        4, 3, width=12, lam=LAM, eta=0.5, steps=2000, scales=(0.8,), seeds=(2,)
    )
    assert o[0] == pytest.approx(obj, rel=1e-10)


def test_gd_ends_below_dnc_at_k5_l4():
    """K = 5, L = 4 (no SRG block exists at K = 5): GD from init scale 0.55, seed 0,
    width 16 ends below L_DNC; the numpy network objective of the GD factors confirms it
    (the map and its polish on the same run: the slow test below)."""
    factors, o = svflow.explicit.ldufm_gd_batch(
        5, 4, width=16, lam=LAM, eta=0.5, steps=20_000, scales=(0.55,), seeds=(0,)
    )
    direct = svflow.explicit.network_objective([F[0] for F in factors], lam_H=LAM, lam_W=LAM)
    assert direct == pytest.approx(o[0], rel=1e-9)
    assert direct < 0.99 * svflow.explicit.dnc_loss(5, 4, lam_H=LAM, lam_W=LAM)


@pytest.mark.slow
def test_optimality_map_finds_a_point_below_dnc_at_k5_l4():
    """The map on the run above: below L_DNC at a bottleneck rank below K, the stored
    polished factors give the stored value (numpy network objective), and the nonsmooth
    polish makes the kink point Clarke stationary (about 20 s, most of it the nonsmooth stage)."""
    kw = dict(lam=LAM, eta=0.5, steps=20_000, scales=(0.55,), seeds=1, width=16)
    ds = svflow.explicit.ldufm_optimality_map((5,), (4,), polish_steps=200, **kw)
    Ld = svflow.explicit.dnc_loss(5, 4, lam_H=LAM, lam_W=LAM)
    assert bool(ds["beats_dnc"].item())
    assert float(ds["construction_ratio"].item()) == pytest.approx(1.0)
    assert int(ds["best_rank"].item()) < 5
    factors, o = svflow.explicit.ldufm_gd_batch(
        5, 4, width=16, lam=LAM, eta=0.5, steps=20_000, scales=(0.55,), seeds=(0,)
    )
    direct = svflow.explicit.network_objective([F[0] for F in factors], lam_H=LAM, lam_W=LAM)
    assert direct < 0.99 * Ld
    assert float(ds["objective"].item()) == pytest.approx(direct, rel=1e-9)  # the GD end
    # the polish only lowers it; the stored best factors give the stored best value
    assert float(ds["best_objective"].item()) <= direct
    stored = svflow.explicit.map_parameters(ds, 5, 4)
    again = svflow.explicit.network_objective(stored, lam_H=LAM, lam_W=LAM)
    assert again == pytest.approx(float(ds["best_objective"].item()), rel=1e-10)
    assert int(ds["n_below_dnc"].item()) == 1 and int(ds["n_runs"].item()) == 1
    # a ReLU kink point: the plain gradient stays large, live kinks; the nonsmooth
    # stage of the polish makes it Clarke stationary (gap under grad_tol)
    assert float(ds["best_grad_norm"].item()) > 1e-4
    assert int(ds["kink_count"].item()) > 0
    assert float(ds["best_clarke_gap"].item()) < float(ds.attrs["grad_tol"])
    assert bool(ds["best_converged"].item())


def test_phase_map_categories_claim_only_what_was_compared():
    """K <= 5 (no SRG block exists) is labelled 'no known construction beats DNC',
    never 'DNC'; K = 6 at L = 4 is an SRG cell (rho < 1, closed form)."""
    ds = svflow.explicit.explicit_phase_map(range(2, 7), range(2, 5))
    names = ds["relu_category"].attrs["flag_meanings"].split()
    assert "DNC" not in names
    low = ds["relu_category"].sel(classes=slice(2, 5)).values
    assert {names[c] for c in low.ravel()} == {"no_known_construction_beats_DNC"}
    assert names[int(ds["relu_category"].sel(classes=6, depth=4))] == "SRG"


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="seeds"):
        svflow.explicit.ldufm_optimality_map((5,), (4,), seeds=0)
    with pytest.raises(ValueError, match="param"):
        svflow.explicit.ldufm_sweep("depth", (3, 4))
    with pytest.raises(ValueError, match="scale"):
        svflow.explicit.ldufm_runs(4, 3, scale=-1.0, steps=10)
    with pytest.raises(ValueError, match="setting"):
        from svflow.explicit._ldufm_studies import ldufm_study

        ldufm_study("ldufm_fig1", "huge")


def _dnc_model(K, L, lam, q):
    """The L-DUFM as a DeepUFM at the DNC construction (width K, n = 1), every factor
    scaled by the balanced scales of :func:`balanced_scales` with output scale q."""
    fs = dnc_factors(K, L, width=K, seed=1)
    c = svflow.explicit.balanced_scales(fs, q, lam_H=lam, lam_W=lam)
    scaled = [cj * F for cj, F in zip(c, fs)]
    return svflow.model_from_arrays(scaled, activation="relu", loss="squared", weight_decay=lam)


def test_ldufm_as_deepufm_reaches_the_closed_form_dnc_optimum_through_train():
    """The L-DUFM is the DeepUFM with ReLU, squared loss and weight decay. At the DNC
    construction scaled to the optimal output scale q* of the closed form
    (:func:`scale_loss`: the larger root of (1 - q) q^(1 - 2/N) = K Lambda) its
    objective is L_DNC and its full gradient vanishes; from q = 0.7 q* the one GD
    loop (:func:`svflow.train`) descends to L_DNC, and :func:`polish` of the same
    model does too."""
    K, L, lam = 3, 3, 0.02
    Ld = svflow.explicit.dnc_loss(K, L, lam_H=lam, lam_W=lam)
    _, qstar = svflow.explicit.scale_loss(K * lam, L + 1)
    qstar = float(qstar)
    assert 0.5 < qstar < 1.0  # a non-trivial optimum
    at = _dnc_model(K, L, lam, qstar)
    assert float(at.objective()) == pytest.approx(Ld, rel=1e-12)
    assert max(float(np.abs(g).max()) for g in at.gradient()) < 1e-10
    start = _dnc_model(K, L, lam, 0.7 * qstar)
    assert float(start.objective()) > Ld + 1e-3
    ds = svflow.train(start, eta=0.5, steps=3000, num_times=5, progress=False)
    obj = ds["objective"].values
    assert np.all(np.diff(obj) <= 1e-15)  # GD on a smooth stretch only descends
    assert obj[-1] == pytest.approx(Ld, rel=1e-9)
    _, pol, gn, gap = svflow.explicit.polish(start, max_steps=200)
    assert pol[0] == pytest.approx(Ld, rel=1e-9)
    assert gn[0] < 1e-6 and gap[0] <= gn[0] * (1 + 1e-9)


def test_lam_is_an_alias_of_weight_decay():
    """ldufm_gd_batch with weight_decay= and with lam= make the same run; both at once
    is an error naming them."""
    kw = dict(width=6, eta=0.5, steps=50, scales=(1.0,), seeds=(0,))
    _, a = svflow.explicit.ldufm_gd_batch(3, 2, weight_decay=LAM, **kw)
    _, b = svflow.explicit.ldufm_gd_batch(3, 2, lam=LAM, **kw)
    assert a[0] == b[0]
    with pytest.raises(TypeError, match="weight_decay= or its alias lam="):
        svflow.explicit.ldufm_gd_batch(3, 2, weight_decay=LAM, lam=LAM, **kw)
    with pytest.raises(ValueError, match="weight_decay"):
        svflow.explicit.ldufm_runs(3, 2, weight_decay=-1.0, steps=10)


def test_the_one_forward_pass_keeps_every_layer():
    """DeepUFM.representations (the forward pass of svflow.train's model) against a numpy
    forward pass written out by hand: H, then W_l X and its ReLU per hidden layer,
    then Z, which is the model's logits; layer_representations is the same pass."""
    model = svflow.random_model(
        3, depth=3, width=5, key=4, samples_per_class=2, activation="relu", loss="squared", weight_decay=LAM
    )
    names, mats = model.representations()
    H, W1, W2, W3 = (np.asarray(F) for F in model.factors)
    p1 = W1 @ H
    p2 = W2 @ np.maximum(p1, 0.0)
    want = [H, p1, np.maximum(p1, 0.0), p2, np.maximum(p2, 0.0), W3 @ np.maximum(p2, 0.0)]
    assert names == ["H", "pre1", "post1", "pre2", "post2", "Z"]
    for got, w in zip(mats, want):
        np.testing.assert_allclose(np.asarray(got), w, rtol=1e-12, atol=1e-14)
    assert np.array_equal(np.asarray(mats[-1]), np.asarray(model.logits()))
    names2, mats2 = svflow.explicit.layer_representations(model.factors)
    assert names2 == names and all(np.array_equal(a, b) for a, b in zip(mats, mats2))


def test_fit_split_and_class_means_match_an_uninterrupted_train_call():
    """The fit / regularisation split over training and the end-of-training class-mean
    and Gram matrices (Fig. 5 and 6 panels) against one uninterrupted ``train`` call,
    recomputed in numpy: class means of the forward pass, M^T M, the mean squared
    loss of Z against the one-hot targets and (lam/2) sum ||F||^2 of its factors."""
    K, L, n = 4, 3, 2
    kw = dict(width=6, samples=n, scale=1.0)
    ds = svflow.explicit.ldufm_runs(K, L, steps=300, seeds=(2,), num_times=6, lam=LAM, polish_steps=5, **kw)
    model = svflow.random_model(
        K,
        depth=L,
        width=6,
        scale=1.0,
        key=2,
        samples_per_class=n,
        activation="relu",
        loss="squared",
        weight_decay=LAM,
    )
    start = model
    _, model = svflow.train(model, eta=0.5, steps=300, num_times=2, return_model=True, progress=False)
    fs = [np.asarray(F, float) for F in model.factors]
    X = fs[0]
    mats = {"H": X}
    for i, W in enumerate(fs[1:], 1):
        P = W @ X
        if i < L:
            mats[f"pre{i}"], X = P, np.maximum(P, 0.0)
            mats[f"post{i}"] = X
        else:
            mats["Z"] = P
    Y = np.repeat(np.eye(K), n, axis=1)
    fit = np.sum((mats["Z"] - Y) ** 2) / (2 * K * n)
    reg = LAM / 2 * sum(np.sum(F**2) for F in fs)
    run = ds.isel(seed=0)
    assert float(run["fit_t"][-1]) == pytest.approx(fit, rel=1e-9)
    assert float(run["regularisation_t"][-1]) == pytest.approx(reg, rel=1e-9)
    # the split adds up to the recorded objective at every record, start included
    np.testing.assert_allclose(run["fit_t"] + run["regularisation_t"], run["objective"], rtol=1e-12)
    # at step 0 the penalty is that of the start itself
    reg0 = LAM / 2 * sum(np.sum(np.asarray(F, float) ** 2) for F in start.factors)
    assert float(run["regularisation_t"][0]) == pytest.approx(reg0, rel=1e-12)
    for name, P in mats.items():
        M = P.reshape(P.shape[0], K, n).mean(axis=-1)
        got = run["class_means"].sel(layer=name).values
        np.testing.assert_allclose(got[: M.shape[0]], M, rtol=1e-8, atol=1e-12)
        assert np.all(np.isnan(got[M.shape[0] :]))  # padding below a layer's own rows
        np.testing.assert_allclose(run["gram"].sel(layer=name).values, M.T @ M, rtol=1e-8, atol=1e-12)


def test_run_figures_draw_the_stored_matrices_on_a_tiny_setting():
    """Figs. 2, 5 and 6 draw from one tiny sweep (K = 3, L = 3, width 5, n = 2, 30
    steps, two init scales x two seeds): Figs. 5 and 6 have a second row with the
    fit / regularisation split and the matrix pictures, whose images are the
    non-zero rows of the stored class means of the lowest-loss run (M2 = post1)
    and their Gram matrix M^T M; Fig. 2 keeps NC1 over training and has no
    matrix row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from svflow.explicit._ldufm_studies import ldufm_scale_sweep
    from svflow.figures.fig_ldufm import plot_fig2, plot_fig5, plot_fig6

    kw = dict(
        width=5, depth=3, weight_decay=LAM, eta=0.5, steps=30, seeds=(0, 1), num_times=4, polish_steps=2
    )
    ds = ldufm_scale_sweep((0.55, 1.0), classes=(3,), samples=2, **kw)
    fig = plot_fig5(ds)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("objective = fit + regularisation" in t for t in titles) == 1
    assert sum("NC1 over training" in t for t in titles) == 1
    d = ds.sel(classes=3)
    fin = d["final_objective"].values  # (scale, seed)
    i, j = np.unravel_index(np.argmin(fin), fin.shape)
    M = d.isel(scale=i, seed=j)["class_means"].sel(layer="post1").values
    M = M[~np.isnan(M).all(axis=1)]
    M = M[np.abs(M).max(axis=1) > 1e-8 * np.abs(M).max()]
    assert M.shape[0] >= 1
    (ax_m,) = [ax for ax in fig.axes if ax.get_title().startswith("M2 = class means of post1")]
    np.testing.assert_array_equal(ax_m.images[0].get_array(), M)
    (ax_g,) = [ax for ax in fig.axes if ax.get_title().startswith("M2^T M2")]
    np.testing.assert_allclose(ax_g.images[0].get_array(), M.T @ M, rtol=1e-10, atol=1e-14)
    plt.close(fig)
    d6 = d.assign_attrs(classes=3)
    fig = plot_fig6(d6)
    assert len([ax for ax in fig.axes if ax.images]) == 2 * 3  # two init-scale rows of pictures
    plt.close(fig)
    fig = plot_fig2(d6)
    assert sum("NC1 over training" in ax.get_title() for ax in fig.axes) == 2
    assert not any(ax.images for ax in fig.axes)
    plt.close(fig)


def test_face_newton_runs_up_to_its_size_cap():
    """The face Newton runs for models of at most FACE_NEWTON_MAX_PARAMS parameters: K = 10,
    L = 4 at width 30 has 30*10 + 3*30*30 + 10*30 = 3300, at width 80 80*10 + 3*80*80 +
    10*80 = 20800 (counted by hand)."""
    from svflow.explicit._ldufm import FACE_NEWTON_MAX_PARAMS, face_newton_runs

    small = svflow.random_model(10, depth=4, width=30, activation="relu", loss="squared")
    large = svflow.random_model(10, depth=4, width=80, activation="relu", loss="squared")
    assert sum(F.size for F in small.factors) == 3300 <= FACE_NEWTON_MAX_PARAMS
    assert sum(F.size for F in large.factors) == 20800 > FACE_NEWTON_MAX_PARAMS
    assert face_newton_runs(small) and not face_newton_runs(large)
    ds = svflow.explicit.ldufm_runs(3, 2, width=4, steps=2, seeds=(0,), polish_steps=1, kinks=False)
    assert ds.attrs["face_newton"] == 0 and ds.attrs["kink_stage"] == 0


def test_width_sweep_across_the_cap_stores_face_newton_per_width(monkeypatch):
    """A width sweep whose widths fall on both sides of the face Newton's size cap keeps
    ``face_newton`` as a variable along the sweep (K = 3, L = 2: 3w + w^2 + 3w parameters,
    16 at w = 2 and 72 at w = 6, against a cap lowered to 30)."""
    import svflow.explicit._ldufm as ldufm

    monkeypatch.setattr(ldufm, "FACE_NEWTON_MAX_PARAMS", 30)
    ds = svflow.explicit.ldufm_sweep(
        "width", [2, 6], classes=3, depth=2, steps=200, seeds=(0,), polish_steps=50
    )
    assert "face_newton" not in ds.attrs
    assert ds["face_newton"].values.tolist() == [1, 0]
    assert ds["face_newton"].dims == ("width",)
