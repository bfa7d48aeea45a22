"""Analysis of trajectories: certified outcomes, the finite-horizon classifier,
max-margin (KKT) limits, softmax codes over groups."""
