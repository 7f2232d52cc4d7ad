import numpy as np

from napari_dsir.figures import loss_curves, montage, png_bytes, to_uint8, write_png


def _decode_png(data: bytes):
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n = struct.unpack(">I", data[pos : pos + 4])[0]
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, _, color = hdr[0], hdr[1], hdr[2], hdr[3]
    ch = 3 if color == 2 else 1
    raw = zlib.decompress(idat)
    rows = [raw[r * (w * ch + 1) + 1 : (r + 1) * (w * ch + 1)] for r in range(h)]
    return np.frombuffer(b"".join(rows), np.uint8).reshape(h, w, ch).squeeze()


def test_png_round_trip_grey_and_rgb(tmp_path):
    grey = (np.arange(12 * 7) % 256).astype(np.uint8).reshape(12, 7)
    np.testing.assert_array_equal(_decode_png(png_bytes(grey)), grey)
    rgb = np.stack([grey, 255 - grey, grey // 2], -1)
    np.testing.assert_array_equal(_decode_png(png_bytes(rgb)), rgb)
    p = write_png(tmp_path / "f.png", np.linspace(0, 1, 100).reshape(10, 10))
    assert _decode_png(p.read_bytes()).max() == 255


def test_scaling_montage_and_curves():
    assert to_uint8(np.array([[0.0, 1.0], [np.nan, 2.0]]), 0, 100).tolist() == [[0, 128], [0, 255]]
    m = montage([[np.zeros((4, 4)), np.ones((8, 8))]], size=16, pad=2)
    assert m.shape == (20, 38)
    img = loss_curves({"train": [1.0, 0.5, 0.2], "val": [1.2, 0.6, 0.3]}, 100, 50)
    assert img.shape == (50, 100, 3)
    assert ((img == [31, 119, 180]).all(-1)).sum() > 60  # a solid blue line
