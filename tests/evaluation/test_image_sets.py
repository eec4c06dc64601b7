"""The encoding cache: each image set encoded once by the reference model, its bar shown only when asked."""

import pytest
import torch

from latentmap.errors import ShapeMismatchError
from latentmap.evaluation.image_sets import EncodingCache
from tests.evaluation.test_relocation import affine_model, make_images
from tests.helpers.progress import labels, recorded_bars


def test_the_cache_encodes_each_set_once_and_shows_a_bar_only_when_asked():
    model = affine_model("syn-a", 3)
    images = make_images(20, seed=4, model=model)
    with recorded_bars() as bars:
        quiet = EncodingCache(model, batch_size=8)
        z = quiet.encode("real", images)
        assert bars == []  # no bar unless asked
        shown = EncodingCache(model, batch_size=8, progress=True)
        shown.encode("real", images)
        shown.encode("real", images)  # cached: no second pass
    assert labels(bars) == ["encode syn-a"] and bars[0].total == 3
    torch.testing.assert_close(z, model.encode(images))
    assert "real" in quiet and "other" not in quiet
    with pytest.raises(ShapeMismatchError, match="reference model 'syn-a' expects images of shape"):
        quiet.encode("small", torch.zeros(2, 1, 4, 4))
