"""Array shapes named once (jaxtyping aliases used in public signatures)."""

from jaxtyping import Array, ArrayLike, Float

Modes = Float[Array, " mode"]
"""One value per Walsh mode: shape (K,)."""

FactorModes = Float[Array, "factor mode"]
"""Factor singular values in the Walsh frame: shape (N, K), N = depth + 1."""

TimeModes = Float[Array, "time mode"]
"""A trajectory of mode values: shape (T, K)."""

Scalar = Float[Array, ""]

__all__ = ["Array", "ArrayLike", "Float", "Modes", "FactorModes", "TimeModes", "Scalar"]
