"""Information gain settings as recorded with the gains."""

import numpy as np


def test_information_gain_decodes_in_the_chunk_it_is_given_and_records_it():
    from latentmap.support.info_gain import information_gain
    from tests.evaluation.test_relocation import affine_model, make_images

    model = affine_model("syn-a", 3)
    images = make_images(24, seed=1, model=model)
    chunked = information_gain(model, images, batch_size=8, chunk_rows=5)
    assert (chunked.batch_size, chunked.decode_rows, chunked.n_images) == (8, 5, 24)
    whole = information_gain(model, images, batch_size=8, chunk_rows=1000)
    assert whole.decode_rows == 1000
    # a setting of the computation only: float32 decodes in other chunks may round differently, hardly more
    np.testing.assert_allclose(chunked.gains, whole.gains, rtol=1e-5)
