"""The documentation: API coverage, the example notebook and the site build.

- API coverage: the public names read from ``svflow/__init__.py`` by the docs
  hook (static parse, no import) are the names ``import svflow`` really
  exports (a second route), and each has exactly one ``::: svflow.NAME``
  entry on an API page.
- The example notebook ``docs/examples/quickstart.ipynb`` runs top to bottom
  in a fresh kernel; its own cells check the results against routes outside
  svflow (loss, margin and singular values from the logit matrix built with
  SciPy's Hadamard matrix; the certified limit is a KKT point of the
  max-margin problem built from the same matrix; neural collapse for two
  factors and for the exact NC start). The outcome table stored in the notebook (what the site shows)
  must equal the one the fresh run prints.
- The tour on the Getting-started page (its ``python`` blocks, in order, as
  one script) runs; its sweep of ``basin_cells`` must give the outcomes, ranks
  and decided flags that ``basin_map`` gives for the same starts at the same
  single horizon (a second route to the same numbers), and its certified
  outcome must be decided, coded from its support (0 when all K - 1 modes
  carry the norm) and polished to a KKT point.
- ``mkdocs build --strict`` succeeds (skipped when the ``docs`` extra is not
  installed), and the built site serves its figures and MathJax itself.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types

import pytest

from helpers import ROOT, checkout_env

NOTEBOOK = ROOT / "docs" / "examples" / "quickstart.ipynb"


def _load_hooks():
    spec = importlib.util.spec_from_file_location("svflow_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_pages_cover_every_public_name():
    import svflow

    hooks = _load_hooks()
    exported = {
        name
        for name in dir(svflow)
        if not name.startswith("_") and not isinstance(getattr(svflow, name), types.ModuleType)
    }
    for sub in ("studies", "explicit"):
        exported |= {f"{sub}.{n}" for n in getattr(svflow, sub).__all__}
    assert set(svflow.__all__) == exported - {n for n in exported if "." in n} | {"studies", "explicit"}
    assert hooks.public_names() == exported
    missing, unknown, twice = hooks.api_coverage()
    assert missing == [], f"public names without an API entry in docs/api/: {missing}"
    assert unknown == [], f"API entries of names svflow does not export: {unknown}"
    assert twice == [], f"names with entries on several API pages: {twice}"


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", checkout_env()["PYTHONPATH"])
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    stored = nbformat.read(NOTEBOOK, as_version=4)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    basin_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "basin_map(" in c.source]
    assert len(basin_cells) == 1
    # every printed result the site shows (the outcome table, the certified outcome, the
    # checks) must be what a fresh run prints; a dataset's repr holds timestamps: skipped
    compared = [
        i
        for i, c in enumerate(stored.cells)
        if c.cell_type == "code" and _stream_text(c).strip() and "<xarray." not in _stream_text(c)
    ]
    assert basin_cells[0] in compared and len(compared) >= 4
    for i in compared:
        fresh, old = _stream_text(nb.cells[i]), _stream_text(stored.cells[i])
        assert fresh == old, (
            f"the notebook's stored output of cell {i} is stale (stored {old!r}, fresh {fresh!r}): "
            "jupyter nbconvert --to notebook --execute --inplace docs/examples/quickstart.ipynb"
        )


@pytest.mark.slow
def test_getting_started_tour_runs(tmp_path):
    import re

    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) >= 6, "the tour's python blocks were not found"
    check = """
grid = dict(depths=[1, 3], eps=np.geomspace(1e-2, 1e-1, 3), delta=[0.1, 0.3])
bm2 = svflow.studies.basin_map(8, **grid, horizons=(100.0,))  # the tour's single horizon
for v in ("outcome", "rank", "decided"):
    assert (res[v].values == bm2[v].values).all(), (v, res[v].values, bm2[v].values)
assert res["decided"].values.any()
r = int(o.support.sum())
assert int(o.outcome) == (0 if r == 7 else r) and r > 0 and float(o.kkt_residual) < 1e-6
assert (ob.outcome.values >= 0).all()
assert float(err.max_rel_error) < 1e-2
print("tour ok")
"""
    script = tmp_path / "tour.py"
    script.write_text("\n".join(blocks) + check, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**checkout_env(), "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "tour ok" in proc.stdout


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "mkdocstrings", "mkdocs_jupyter", "material", "mathjax"):
        pytest.importorskip(module, reason="docs extra not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    engines = (site / "api" / "engines" / "index.html").read_text(encoding="utf-8")
    assert 'id="svflow.simulate"' in engines
    for png in (ROOT / "figures").glob("*.png"):
        assert (site / "figures" / png.name).read_bytes() == png.read_bytes()
    assert (site / "javascripts" / "mathjax" / "tex-chtml.js").is_file()
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert '<script src="http' not in text and "cdn.jsdelivr" not in text, page
