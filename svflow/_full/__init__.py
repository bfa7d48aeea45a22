"""The full-parameter engine: the model (DeepUFM and its starts), gradient-descent
training, the comparison with the reduced ODE."""
