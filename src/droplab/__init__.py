"""droplab: dropout, from the lecture's ten-line formula to a reproducible research tool.

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``droplab.swap_dropout``, imported on first use (it needs torch)."""
    if name in ("swap_dropout", "SwapReport"):
        from . import swap

        return getattr(swap, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
