"""Thumbnails cost what a model's image costs to decode, never more."""

from __future__ import annotations


def test_an_image_larger_than_any_model_makes_is_never_decoded_for_a_thumbnail(tmp_path):
    """Issue #22: an image just under Pillow's bomb limit cost 1.4 GB to thumbnail; past the
    largest tier's pixels it gets no thumbnail (the page still links the image)."""
    import io as _io

    from PIL import Image

    from nbpipe.ui.page import Thumbs, max_pixels

    side = int(max_pixels() ** 0.5) + 1
    huge, small = _io.BytesIO(), _io.BytesIO()
    Image.new("1", (side, side)).save(huge, "PNG")
    Image.new("RGB", (64, 48)).save(small, "PNG")
    thumbs = Thumbs(tmp_path / "thumbs", tmp_path)
    assert not thumbs._make(tmp_path / "thumbs" / "huge.jpg", lambda: huge.getvalue())
    assert thumbs._make(tmp_path / "thumbs" / "small.jpg", lambda: small.getvalue())
