"""latentmap: linear maps between the latent spaces of generative models, support sets, benchmarks."""

__version__ = "0.1.0"

from latentmap.io.checkpoint import load_model, save_checkpoint  # noqa: E402
from latentmap.data.datasets import load_dataset  # noqa: E402
from latentmap.errors import LatentmapError  # noqa: E402
from latentmap.maps.linear import LinearMap  # noqa: E402
from latentmap.models import ADAPTERS, LatentModel, VAELikeModel, register_adapter  # noqa: E402
from latentmap.support.build import SupportSet, build_support_set  # noqa: E402
# adapters of models people already have; they register model sources, so after .checkpoint
from latentmap.models import external_stylegan, pythae_model  # noqa: E402,F401
from latentmap.models.wrapped import wrap  # noqa: E402
from latentmap.evaluation.inversion import InversionResult, invert  # noqa: E402

__all__ = ["__version__", "load_model", "save_checkpoint", "load_dataset", "LatentmapError", "LinearMap", "LatentModel",
           "VAELikeModel", "register_adapter", "ADAPTERS", "wrap", "invert", "InversionResult"]
__all__ += ["SupportSet", "build_support_set"]
