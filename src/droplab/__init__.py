"""droplab: dropout, from the lecture's ten-line formula to a reproducible research tool.

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``droplab.swap_dropout`` and ``droplab.mc_predict``, imported on first use (they need torch)."""
    if name in ("swap_dropout", "SwapReport"):
        from . import swap

        return getattr(swap, name)
    if name == "mc_predict":
        from .ensemble import mc_predict

        return mc_predict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
