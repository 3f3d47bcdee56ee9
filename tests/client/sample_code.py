"""Code that tests wrap with den.function / den.module."""

from __future__ import annotations


def train(data: list[float], epochs: int = 3, *, lr: float = 0.1, seed=object()) -> float:
    """Train a tiny model and return its loss."""
    return sum(data) * lr / epochs


async def predict_async(x: int) -> int:
    return x + 1


class Model:
    """A toy model."""

    def __init__(self, size: int, name: str = "m") -> None:
        self.size = size
        self.name = name

    def predict(self, x: float) -> float:
        """Predict y from x."""
        return x * self.size

    @classmethod
    def load(cls, path: str) -> Model:
        return cls(1)

    @staticmethod
    def version() -> str:
        return "1"

    def _private(self) -> None:
        pass
