"""The sweep runner: plan (keys, chunks), store (zarr), runner (sweep, open_sweep)."""
