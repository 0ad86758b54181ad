"""The preset renderer over real images made here: sizes, formats, orientation, alpha, quality, limits."""

from __future__ import annotations

import io
import math
import struct
import zlib

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageSequence, ImageStat

from docpipe.errors import FileCorrupt, ImageTooManyPixels
from presets.render import BY_NAME, PRESETS, fit, render
from tests.unit.test_presets_real_files import STORED_AS


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def photo(size=(1200, 900)) -> Image.Image:
    """Smooth gradients and shapes: photo-like enough for quality checks."""
    w, h = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.merge(
        "RGB",
        (image.getchannel(0), image.getchannel(0).transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.new("L", size, 90)),
    )
    draw = ImageDraw.Draw(image)
    for i in range(12):
        draw.ellipse(
            (i * w // 14, i * h // 20, i * w // 14 + w // 6, i * h // 20 + h // 5), fill=(20 * i, 255 - 15 * i, 128)
        )
    return image


def by_name(results) -> dict:
    return {r.preset: r for r in results}


def opened(rendered) -> Image.Image:
    return Image.open(io.BytesIO(rendered.data))


def test_four_presets_with_their_bounds_formats_and_no_upscaling() -> None:
    results = by_name(render(encode(photo((3000, 2000)), "JPEG", quality=92)))

    assert {n: (r.width, r.height, r.format) for n, r in results.items()} == {
        "ai-vision": (2048, 1365, "JPEG"),
        "ai-chat": (1920, 1280, "JPEG"),
        "preview": (800, 533, "JPEG"),
        "thumbnail": (200, 133, "WEBP"),
    }
    for r in results.values():
        assert opened(r).size == (r.width, r.height)
        assert opened(r).format == r.format


def test_a_small_image_is_never_upscaled() -> None:
    results = by_name(render(encode(photo((300, 150)), "PNG")))
    assert (results["ai-chat"].width, results["preview"].width, results["thumbnail"].width) == (300, 300, 200)


def test_a_tall_strip_is_bounded_in_both_dimensions() -> None:
    results = by_name(render(encode(photo((100, 20000)), "PNG")))
    for preset in PRESETS:
        r = results[preset.name]
        assert r.width <= preset.max_width and r.height <= preset.max_height
    assert (results["preview"].width, results["preview"].height) == fit(100, 20000, 800, 1600)


def exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPS latitude: must not survive
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_metadata_is_stripped(orientation: int) -> None:
    # given a 600x300 image whose top-left quarter is red, stored with the inverse of each orientation
    upright = Image.new("RGB", (600, 300), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 300, 150))
    turn = STORED_AS[orientation]
    stored = upright if turn is None else upright.transpose(turn)

    preview = by_name(render(encode(stored, "JPEG", quality=95, exif=exif_with_orientation(orientation))))["preview"]

    image = opened(preview)
    assert image.size == (600, 300)
    assert image.getpixel((20, 20))[0] > 200 and image.getpixel((580, 280))[2] > 200
    assert not image.getexif() and "exif" not in image.info


def rgba() -> Image.Image:
    image = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((100, 75, 300, 225), fill=(200, 30, 30, 255))
    return image


def test_alpha_is_kept_in_webp_and_flattened_on_white_in_jpeg() -> None:
    results = by_name(render(encode(rgba(), "PNG")))

    thumbnail, preview = opened(results["thumbnail"]), opened(results["preview"])
    assert thumbnail.mode == "RGBA" and thumbnail.getpixel((2, 2))[3] == 0
    assert preview.mode == "RGB" and min(preview.getpixel((2, 2))) > 245
    assert preview.getpixel((200, 150))[0] > 150


def test_palette_with_transparency_keeps_its_alpha() -> None:
    palette = rgba().convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = palette.getpixel((0, 0))
    thumbnail = opened(by_name(render(encode(palette, "PNG", transparency=palette.getpixel((0, 0)))))["thumbnail"])
    assert thumbnail.mode == "RGBA" and thumbnail.getpixel((1, 1))[3] == 0


def test_grayscale_and_16_bit_inputs_become_8_bit_rgb() -> None:
    gradient = Image.linear_gradient("L").resize((512, 256))
    sixteen = gradient.point(lambda v: v * 256, "I").convert("I;16")
    for source in (encode(gradient, "PNG"), encode(sixteen, "PNG")):
        preview = opened(by_name(render(source))["preview"])
        assert preview.mode == "RGB"
        assert preview.getpixel((256, 3))[0] < 20 and preview.getpixel((256, 252))[0] > 235  # dark top, light bottom


def test_cmyk_jpeg_is_converted_to_rgb_with_its_colours() -> None:
    cmyk = Image.new("CMYK", (400, 300), (0, 255, 255, 0))  # pure red in CMYK
    preview = opened(by_name(render(encode(cmyk, "JPEG", quality=95)))["preview"])
    r, g, b = preview.getpixel((200, 150))
    assert preview.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_an_embedded_profile_is_converted_and_not_carried_into_outputs() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = Image.new("RGB", (400, 300), (30, 160, 90))

    preview = opened(by_name(render(encode(source, "JPEG", quality=95, icc_profile=srgb)))["preview"])

    assert "icc_profile" not in preview.info
    assert all(abs(a - b) <= 4 for a, b in zip(preview.getpixel((200, 150)), (30, 160, 90), strict=True))


def animated_gif(frames: int = 12) -> bytes:
    images = []
    for i in range(frames):
        frame = Image.new("RGB", (480, 360), ((i * 37) % 256, 100, (200 + i * 11) % 256))
        ImageDraw.Draw(frame).rectangle(((i * 7) % 420, 100, (i * 7) % 420 + 60, 200), fill=(255, 255, 0))
        images.append(frame)
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)


def test_animation_is_kept_in_thumbnail_and_preview_and_ai_presets_take_the_first_frame() -> None:
    results = by_name(render(animated_gif(12)))

    for name in ("thumbnail", "preview"):
        image = opened(results[name])
        assert (image.format, getattr(image, "n_frames", 1), results[name].animated) == ("WEBP", 12, True)
    for name in ("ai-chat", "ai-vision"):
        assert getattr(opened(results[name]), "n_frames", 1) == 1
        assert results[name].format == "JPEG"


def test_long_animations_are_cut_to_a_bounded_number_of_frames() -> None:
    from presets.render import MAX_FRAMES

    thumbnail = opened(by_name(render(animated_gif(MAX_FRAMES + 10)))["thumbnail"])
    assert thumbnail.n_frames == MAX_FRAMES


def test_heic_photos_are_decoded() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    assert pillow_heif is not None
    source = encode(photo((1024, 768)), "HEIF", quality=90)

    results = by_name(render(source))

    assert (results["preview"].width, results["preview"].height) == (800, 600)


def test_a_truncated_jpeg_is_corrupt() -> None:
    data = encode(photo((800, 600)), "JPEG", quality=90)
    with pytest.raises(FileCorrupt):
        render(data[: len(data) // 3])


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, with one tiny compressed row: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + chunk(b"IEND", b"")
    )


def test_a_jpeg_libjpeg_warns_about_is_still_rendered() -> None:
    data = encode(photo((1600, 1200)), "JPEG", quality=90)
    scan = data.index(b"\xff\xda")  # three stray bytes before the scan: a warning, not an error
    results = by_name(render(data[:scan] + b"\x00\x00\x00" + data[scan:]))

    assert (results["ai-vision"].width, results["ai-vision"].height) == (1600, 1200)
    assert (results["preview"].width, results["preview"].height) == (800, 600)


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooManyPixels) as info:
        render(bomb_png(20_000, 20_000), max_pixels=100_000_000)
    assert info.value.code == "image.too_many_pixels"


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding() -> None:
    import time

    from tests.fixtures.poison import jpeg_scan_bomb

    bomb = jpeg_scan_bomb(side=8000, scans=20_000)  # minutes of decoding

    started = time.monotonic()
    with pytest.raises(FileCorrupt, match="more than 100 scans"):
        render(io.BytesIO(bomb))
    assert time.monotonic() - started < 2


def test_a_progressive_jpeg_is_still_rendered() -> None:
    data = encode(photo((1200, 900)), "JPEG", quality=90, progressive=True)

    assert by_name(render(io.BytesIO(data)))["preview"].width == 800


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a, b)
    mse = sum(v**2 for v in ImageStat.Stat(diff).rms) / len(diff.getbands())
    return float("inf") if mse == 0 else 20 * math.log10(255 / math.sqrt(mse))


def detailed(size=(4000, 3000)) -> Image.Image:
    """Fine diagonal lines and rows of small text over the photo: detail near the resize's cut-off."""
    image = photo(size)
    draw = ImageDraw.Draw(image)
    for x in range(0, size[0], 7):
        draw.line((x, 0, x + 300, size[1]), fill=(x % 256, 0, 255 - x % 256))
    for y in range(0, size[1], 40):
        draw.text((10, y), "The quick brown fox jumps over the lazy dog " * 20, fill=(0, 0, 0))
    return image


def transparent(image: Image.Image) -> Image.Image:
    """The image with an elliptic alpha mask, soft at the edge."""
    mask = Image.new("L", image.size, 0)
    w, h = image.size
    ImageDraw.Draw(mask).ellipse((w // 10, h // 10, w * 9 // 10, h * 9 // 10), fill=255)
    rgba = image.convert("RGBA")
    rgba.putalpha(mask.resize((w // 4, h // 4)).resize(image.size, Image.Resampling.BILINEAR))
    return rgba


def on_white(image: Image.Image) -> Image.Image:
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.getchannel("A"))
    return white


@pytest.fixture(params=["simd", "pillow"])
def resizer(request, monkeypatch) -> str:
    """Each resizer the renderer has: the SIMD one (where its wheel installs) and Pillow's."""
    from presets import schedule as module

    if request.param == "simd" and module.Resizer is None:
        pytest.skip("cykooz.resizer is not installed here: Pillow resizes")
    if request.param == "pillow":
        monkeypatch.setattr(module, "Resizer", None)
    return request.param


@pytest.mark.parametrize("content", [photo, detailed], ids=["photo", "detailed"])
@pytest.mark.parametrize("kind", ["jpeg-orientation-1", "jpeg-orientation-6", "png-rgba"])
def test_no_preset_is_more_than_1_db_below_plain_lanczos(content, kind, resizer) -> None:
    # given a 4000x3000 JPEG (or a 2000x1500 transparent PNG); the reference is a full-resolution
    # LANCZOS resize (no draft, no reuse; of the image flattened on white for JPEG presets of the PNG)
    if kind == "png-rgba":
        full = transparent(content((2000, 1500)))
        source = encode(full, "PNG", compress_level=1)
    else:
        original = content((4000, 3000))
        exif = Image.Exif()
        exif[0x0112] = int(kind[-1])
        source = encode(original, "JPEG", quality=95, exif=exif.tobytes())
        full = Image.open(io.BytesIO(source)).convert("RGB")
        if kind.endswith("6"):
            full = full.transpose(Image.Transpose.ROTATE_270)

    for rendered in render(source):
        preset = BY_NAME[rendered.preset]
        target = on_white(full) if full.mode == "RGBA" and preset.format == "JPEG" else full
        reference = target.resize((rendered.width, rendered.height), Image.Resampling.LANCZOS)
        plain = Image.open(io.BytesIO(encode(reference, preset.format, quality=preset.quality))).convert(reference.mode)
        ours = opened(rendered).convert(reference.mode)
        # then no preset is more than 1 dB below plain LANCZOS (measured: SIMD Lanczos3 -0.4 to +0.3 dB;
        # Pillow's BICUBIC -0.6 to +0.4, +1.6 for the WebP with alpha)
        assert psnr(ours, reference) >= psnr(plain, reference) - 1.0, rendered.preset


def test_the_api_knows_the_same_preset_names_as_the_renderer() -> None:
    from api.handler import PRESET_NAMES

    assert set(BY_NAME) == PRESET_NAMES


def test_a_resize_in_stripes_matches_one_resize_up_to_rounding(resizer) -> None:
    from presets.schedule import Step, resize, resize_steps, run_steps

    image = detailed((1800, 1400))
    base = Step(lambda: image, 0.0, result=image, done=True)
    steps = resize_steps(base, image.size, (1200, 933))
    assert len(steps) > 1  # stripes and a join

    run_steps(steps)

    single = resize(image, (1200, 933))
    assert steps[-1].result.size == single.size
    assert max(high for _, high in ImageChops.difference(steps[-1].result, single).getextrema()) <= 2


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_the_simd_resize_is_pillows_lanczos_up_to_rounding(mode) -> None:
    from presets import schedule as module

    if module.Resizer is None:
        pytest.skip("cykooz.resizer is not installed here: Pillow resizes")
    image = detailed((1800, 1400))
    seen = on_white if mode == "RGBA" else (lambda image: image)  # a colour counts by its alpha, as shown
    if mode == "RGBA":
        image = transparent(image)
    for size, box in [((1200, 933), None), ((200, 155), None), ((600, 300), (0.0, 700.0, 1800.0, 1400.0))]:
        ours = module.resize(image, size, box)
        theirs = image.resize(size, Image.Resampling.LANCZOS, box=box)
        assert (ours.mode, ours.size) == (mode, size)
        assert psnr(seen(ours), seen(theirs)) > 45, (size, box)


def test_a_jpeg_decoded_into_an_rgb_image_has_the_pixels_pillow_decodes() -> None:
    from presets import decode as module

    if module.simplejpeg is None:
        pytest.skip("simplejpeg is not installed: Pillow decodes JPEGs")
    data = encode(detailed((640, 480)), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as image:
        decoded = module.decode_jpeg(image, image.size)
    with Image.open(io.BytesIO(data)) as image:
        assert decoded.mode == "RGB"
        assert decoded.tobytes() == image.convert("RGB").tobytes()
    assert decoded.readonly  # the decoder's memory: a paste copies it first


def test_steps_run_after_the_steps_they_need_and_failures_reach_the_caller() -> None:
    from presets.schedule import Step, run_steps

    first = Step(lambda: 2, 1.0)
    second = Step(lambda: 3, 5.0)
    product = Step(lambda a, b: a * b, 1.0, (first, second))
    run_steps([first, second, product])
    assert product.result == 6

    def broken() -> None:
        raise OSError("broken encoder")

    with pytest.raises(OSError, match="broken encoder"):
        run_steps([Step(broken, 1.0), Step(lambda: 1, 1.0)])


def test_the_estimated_makespan_follows_the_schedule_of_the_step_runner() -> None:
    from presets.schedule import THREADS, Step, makespan

    long = Step(lambda: None, 10.0)
    short = Step(lambda: None, 4.0)
    after_long = Step(lambda _: None, 5.0, (long,))
    after_short = Step(lambda _: None, 3.0, (short,))
    # two threads: [long 0-10, after_long 10-15] and [short 0-4, after_short 4-7]
    assert makespan([long, short, after_long, after_short]) == (15.0 if THREADS == 2 else 22.0)


def test_a_lone_big_resize_is_planned_in_stripes_and_two_big_resizes_side_by_side(monkeypatch) -> None:
    from presets import schedule as module
    from presets.render import Preset, still_plans
    from presets.schedule import THREADS, makespan

    # Pillow's resizes (the SIMD resizer's are 5-8x cheaper, too cheap to pay for a join)
    monkeypatch.setattr(module, "Resizer", None)
    if THREADS < 2:
        pytest.skip("one thread: nothing to split")
    image = photo((3000, 2000))
    one = Preset("one", 2400, 2400, "JPEG", 85, animated=False)
    two = Preset("two", 2200, 2200, "JPEG", 85, animated=False)

    striped, whole = still_plans(image, [one])
    assert len(striped[0]) > len(whole[0])  # stripes and their join
    assert makespan(striped[0]) < makespan(whole[0])

    striped, whole = still_plans(image, [one, two])
    assert makespan(whole[0]) < makespan(striped[0])  # no joins to pay for


def test_a_jpeg_is_decoded_at_the_smallest_dct_scale_that_covers_the_largest_preset(tmp_path) -> None:
    from presets import decode as module

    if module.simplejpeg is None:
        pytest.skip("simplejpeg is not installed: Pillow decodes at 1/2^n scales")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(photo((4000, 3000)), "JPEG", quality=90, exif=exif.tobytes())
    wide = encode(photo((6000, 4000)), "JPEG", quality=90)
    gray = encode(photo((4000, 3000)).convert("L"), "JPEG", quality=90)
    cmyk = encode(photo((400, 300)).convert("CMYK"), "JPEG", quality=90)

    # ai-vision of the turned photo is 2731 x 2048 stored: 6/8 covers it, Pillow's 1/2 would not
    with Image.open(io.BytesIO(rotated)) as image:
        decoded = module.decode_jpeg(image, (2731, 2048))
        assert (decoded.mode, decoded.size) == ("RGB", (3000, 2250))  # libjpeg-turbo's RGBX rows, not copied
    (tmp_path / "wide.jpg").write_bytes(wide)
    with open(tmp_path / "wide.jpg", "rb") as file, Image.open(file) as image:  # 2048 x 1365: 3/8
        assert module.decode_jpeg(image, (2048, 1365)).size == (2250, 1500)
    with Image.open(io.BytesIO(gray)) as image:
        decoded = module.decode_jpeg(image, (2000, 1500))
        assert (decoded.mode, decoded.size) == ("L", (2000, 1500))
    with Image.open(io.BytesIO(cmyk)) as image:  # Pillow decodes CMYK (and YCCK) JPEGs
        assert module.decode_jpeg(image, (200, 150)) is None

    # and the presets made from the scaled decode are the upright sizes, with the photo's colours
    results = by_name(render(rotated))
    assert (results["ai-vision"].width, results["ai-vision"].height) == (2048, 2731)
    reference = photo((4000, 3000)).transpose(Image.Transpose.ROTATE_270).resize((2048, 2731), Image.LANCZOS)
    assert psnr(opened(results["ai-vision"]).convert("RGB"), reference) > 35


def frames_of(data: bytes) -> list[tuple[Image.Image, int]]:
    """Every frame of an animation, as RGBA, with its duration."""
    image = Image.open(io.BytesIO(data))
    frames = []
    for i in range(image.n_frames):
        image.seek(i)
        image.load()
        frames.append((image.convert("RGBA"), image.info["duration"]))
    return frames


def test_an_animation_is_encoded_in_runs_side_by_side_and_joined_frame_for_frame(monkeypatch) -> None:
    from presets import animate as module
    from presets import schedule

    monkeypatch.setattr(schedule, "THREADS", 2)
    source = Image.open(io.BytesIO(animated_gif(12)))
    frames = [frame.convert("RGBA") for frame in ImageSequence.Iterator(source)]
    durations = [40 + 10 * i for i in range(12)]
    preview = BY_NAME["preview"]

    # every frame of the test animation changes its colour: cut in the middle
    assert module.cuts(frames) == [6]
    steps = module.animation_steps(frames, durations, 0, preview, module.cuts(frames))
    assert len(steps) == 3  # two runs and their join
    schedule.run_steps(steps)
    joined = steps[-1].result
    whole = module.encode_animated(frames, durations, 0, preview)

    assert (joined.width, joined.height, joined.animated) == (480, 360, True)
    assert Image.open(io.BytesIO(joined.data)).info["loop"] == 0
    decoded, reference = frames_of(joined.data), frames_of(whole.data)
    assert [d for _, d in decoded] == durations
    for (ours, _), (theirs, _), original in zip(decoded, reference, frames, strict=True):
        # as close to the source as the animation encoded in one piece
        assert psnr(ours, original) >= psnr(theirs, original) - 0.5
    assert abs(len(joined.data) - len(whole.data)) < 0.02 * len(whole.data)


def test_an_animation_that_changes_a_small_part_of_the_picture_is_not_cut(monkeypatch) -> None:
    from presets import animate as module
    from presets import schedule

    monkeypatch.setattr(schedule, "THREADS", 2)
    background = photo((480, 360))
    frames = []
    for i in range(12):
        frame = background.copy()
        ImageDraw.Draw(frame).rectangle((i * 30, 100, i * 30 + 60, 200), fill=(255, 255, 0))
        frames.append(frame.convert("RGBA"))

    # a cut would start over with a key frame: more bytes than the small changes it replaces
    assert module.cuts(frames) == []
    assert len(module.animation_steps(frames, [80] * 12, 0, BY_NAME["preview"], module.cuts(frames))) == 1


def test_runs_are_not_joined_when_a_run_starts_on_a_partly_transparent_frame(monkeypatch) -> None:
    from presets import animate as module
    from presets import schedule

    monkeypatch.setattr(schedule, "THREADS", 2)
    frames = []
    for i in range(8):  # a coloured box inside a transparent margin, a new colour each frame
        frame = Image.new("RGBA", (240, 180), (0, 0, 0, 0))
        ImageDraw.Draw(frame).rectangle((20, 15, 220, 165), fill=(30 * i, 200, 255 - 30 * i, 255))
        frames.append(frame)
    preset = BY_NAME["preview"]
    parts = [module.encode_animated(frames[a:b], [80] * (b - a), 0, preset).data for a, b in ((0, 4), (4, 8))]

    # libwebp crops the second run's first frame to its box: joined, the first run's last frame would show
    assert module.join_animations(parts) is None
    assert module.join_animations([encode(frames[0], "WEBP"), parts[1]]) is None  # a still image is no run
    # so the animation is encoded whole: every frame keeps its transparent margin
    assert module.cuts(frames) == [4]
    steps = module.animation_steps(frames, [80] * 8, 0, preset, module.cuts(frames))
    schedule.run_steps(steps)
    decoded = frames_of(steps[-1].result.data)
    assert len(decoded) == 8
    for (frame, _), original in zip(decoded, frames, strict=True):
        assert frame.getpixel((5, 5))[3] == 0
        assert all(
            abs(a - b) <= 12 for a, b in zip(frame.getpixel((120, 90)), original.getpixel((120, 90)), strict=True)
        )
