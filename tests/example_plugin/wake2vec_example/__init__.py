"""An example third-party wake2vec plugin: one initialiser and one model family."""

from __future__ import annotations

from pydantic import Field
from wake2vec_plugins.models.demo import DemoFamily

from wake2vec import hookimpl
from wake2vec.api import Initializer, Params


class NoisyMean(Initializer):
    """Base mean plus seeded Gaussian noise of `noise` base standard deviations (example plugin)."""

    name = "example-noisy-mean"

    class Params(Params):
        noise: float = Field(default=0.1, ge=0.0)

    def initialize(self, base, ctx):
        import torch

        rows = base[ctx.base_ids].float()
        noise = torch.randn(len(ctx.ids), base.shape[1], generator=ctx.generator)
        return rows.mean(0) + noise * rows.std() * self.params.noise


class OneLayerDemo(DemoFamily):
    """The built-in demo model with a single transformer layer (example plugin)."""

    name = "example-one-layer"

    class Params(DemoFamily.Params):
        layers: int = 1


@hookimpl
def wake2vec_register_initializers():
    return [NoisyMean]


@hookimpl
def wake2vec_register_model_families():
    return [OneLayerDemo]
