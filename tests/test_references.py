import io

import numpy as np
import pytest
from PIL import Image

from model.references import ReferenceError, crop_reference, load_reference_image, reference_to_array


def test_corrupt_file(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0garbage" * 10)
    with pytest.raises(ReferenceError, match="x.jpg: not a readable image"):
        load_reference_image(p)


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[:60])
    with pytest.raises(ReferenceError, match="cut.png"):
        load_reference_image(p)


def test_too_many_bytes(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(b"\0" * 2048)
    with pytest.raises(ReferenceError, match="big.png: the file is 0.0 MB; reference images may be at most 0 MB"):
        load_reference_image(p, max_bytes=1024)


def test_fifty_megabyte_image_is_refused(tmp_path):
    p = tmp_path / "huge.bmp"
    with open(p, "wb") as f:  # a 50 MB file (contents irrelevant: size is checked first)
        f.truncate(50 * 1024 * 1024)
    with pytest.raises(ReferenceError, match="huge.bmp: the file is 52.4 MB"):
        load_reference_image(p)


def test_too_many_pixels(tmp_path):
    p = tmp_path / "wide.png"
    Image.new("RGB", (4000, 3000)).save(p)
    with pytest.raises(ReferenceError, match="4000x3000 pixels is too large"):
        load_reference_image(p, max_pixels=1_000_000)


def test_animated_gif(tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(ReferenceError, match="anim.gif: animated images \\(3 frames\\)"):
        load_reference_image(p)


def test_tiny_and_bad_arrays():
    with pytest.raises(ReferenceError, match="too small"):
        load_reference_image(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ReferenceError, match="HxWx3"):
        load_reference_image(np.zeros((4, 4, 7), np.uint8))


def test_rgba_is_composited_on_white_and_crop_keeps_the_whole_subject():
    img = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (0, 0, 40, 20))
    rgb = load_reference_image(img)
    assert rgb.mode == "RGB" and rgb.getpixel((5, 5)) == (255, 0, 0)
    sq = crop_reference(rgb, 16)
    assert sq.size == (16, 16)
    arr = np.asarray(sq)
    assert (arr[8, :, 0] > 200).all()  # the wide subject spans the whole width: nothing was cut off
    x = reference_to_array(rgb, 16)
    assert x.shape == (3, 16, 16) and -1 <= x.min() and x.max() <= 1
