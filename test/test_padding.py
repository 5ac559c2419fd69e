# SPDX-License-Identifier: Apache-2.0
"""Padding to multiples of 32 with a smooth fill, and cropping back."""

import math

import pytest
import torch
import torch.nn.functional as F

from s2m2_ros.padding import PadInfo, crop, pad_to_multiple


def _ramp(height: int, width: int) -> torch.Tensor:
    # A smooth image with a range of about 200 grey levels, offset from 0.
    rows = torch.linspace(0.0, 1.0, height).view(height, 1)
    cols = torch.linspace(0.0, 1.0, width).view(1, width)
    red = 30.0 + 200.0 * cols.expand(height, width)
    green = 30.0 + 200.0 * rows.expand(height, width)
    blue = 30.0 + 100.0 * (rows + cols)
    return torch.stack((red, green, blue)).unsqueeze(0)


@pytest.mark.parametrize(
    ("height", "width", "multiple", "expected"),
    [(50, 70, 32, (64, 96)), (1, 1, 32, (32, 32)), (33, 65, 32, (64, 96)), (50, 70, 8, (56, 72))],
)
def test_padded_size_is_the_next_multiple(height, width, multiple, expected):
    images = torch.rand(2, 3, height, width) * 255
    padded, info = pad_to_multiple(images, multiple)
    assert tuple(padded.shape) == (2, 3, *expected)
    assert (info.padded_height, info.padded_width) == expected
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0


def test_padding_is_symmetric_with_the_odd_pixel_at_the_end():
    padded, info = pad_to_multiple(torch.rand(1, 3, 50, 71), 32)  # 14 rows, 25 columns to add
    assert (info.top, info.bottom) == (7, 7)
    assert (info.left, info.right) == (12, 13)
    assert info == PadInfo(7, 7, 12, 13, 50, 71)


def test_original_pixels_are_pasted_unchanged_and_crop_recovers_them():
    images = torch.rand(2, 3, 50, 70) * 255
    padded, info = pad_to_multiple(images)
    assert torch.equal(crop(padded, info), images)
    # The crop works on outputs with another channel count (the network's B×1 maps).
    outputs = padded[:, :1] * 2.0
    assert torch.equal(crop(outputs, info), images[:, :1] * 2.0)


def test_already_multiple_input_is_returned_unchanged():
    images = torch.rand(1, 3, 64, 96)
    padded, info = pad_to_multiple(images)
    assert padded is images
    assert info.is_identity
    assert torch.equal(crop(padded, info), images)


def test_fill_stays_within_the_image_colours():
    # Zero or constant padding would put values outside [min, max] of this image.
    images = _ramp(50, 70)
    padded, info = pad_to_multiple(images)
    fill = torch.ones(padded.shape[-2:], dtype=torch.bool)
    fill[info.top : info.top + info.height, info.left : info.left + info.width] = False
    for channel in range(3):
        low, high = images[0, channel].min(), images[0, channel].max()
        values = padded[0, channel][fill]
        assert values.min() >= low - 1e-3
        assert values.max() <= high + 1e-3


def test_fill_continues_a_smooth_image_without_a_jump_at_the_border():
    images = _ramp(50, 70)
    padded, info = pad_to_multiple(images)
    top, left, height, width = info.top, info.left, info.height, info.width
    inner = padded[0, :, top : top + height, left : left + width]
    jumps = torch.stack(
        [
            (padded[0, :, top - 1, left : left + width] - inner[:, 0]).abs().max(),
            (padded[0, :, top + height, left : left + width] - inner[:, -1]).abs().max(),
            (padded[0, :, top : top + height, left - 1] - inner[:, :, 0]).abs().max(),
            (padded[0, :, top : top + height, left + width] - inner[:, :, -1]).abs().max(),
        ]
    )
    image_range = float(images.max() - images.min())
    # A blur at 1/32 resolution lags the ramp by about half a cell (16 px of a 70 px
    # ramp ≈ 23 % of its range); zero padding would jump by up to the full range.
    assert float(jumps.max()) < 0.3 * image_range


def test_fill_adds_no_structure_to_a_noisy_image():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, 50, 70, generator=generator) * 255
    padded, info = pad_to_multiple(images)
    # The bands left of and above the image are pure fill.
    band = padded[0, :, :, : info.left]
    image_step = (images[0, :, :, 1:] - images[0, :, :, :-1]).abs().max()
    fill_step = max(
        (band[:, 1:] - band[:, :-1]).abs().max(), (band[:, :, 1:] - band[:, :, :-1]).abs().max()
    )
    assert fill_step < 0.05 * image_step


def test_reduced_precision_is_kept():
    images = (torch.rand(1, 3, 40, 40) * 255).to(torch.bfloat16)
    padded, info = pad_to_multiple(images)
    assert padded.dtype == torch.bfloat16
    assert torch.equal(crop(padded, info), images)


def test_crop_rejects_a_tensor_of_another_size():
    _, info = pad_to_multiple(torch.rand(1, 3, 50, 70))
    with pytest.raises(ValueError, match="64×96"):
        crop(torch.zeros(1, 1, 64, 64), info)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        pad_to_multiple(torch.rand(3, 50, 70))
    with pytest.raises(ValueError):
        pad_to_multiple(torch.rand(1, 3, 0, 70))


@pytest.mark.parametrize("height,width", [(37, 100), (70, 33), (50, 70), (96, 64)])
def test_fill_equals_the_whole_enlarged_blur(height: int, width: int) -> None:
    # The spec's fill computed the obvious way: enlarge the whole coarse image.
    images = torch.rand(2, 3, height, width) * 255
    padded, info = pad_to_multiple(images)
    coarse = F.interpolate(images, size=(math.ceil(height / 32), math.ceil(width / 32)),
                           mode="area")
    expected = F.interpolate(coarse, size=(info.padded_height, info.padded_width),
                             mode="bilinear", align_corners=False)
    expected[..., info.top:info.top + height, info.left:info.left + width] = images
    assert torch.allclose(padded, expected, atol=1e-3)


def test_integer_images_are_padded_as_float32() -> None:
    images = torch.randint(0, 256, (2, 3, 50, 70), dtype=torch.uint8)
    padded, info = pad_to_multiple(images)
    expected, expected_info = pad_to_multiple(images.float())
    assert padded.dtype == torch.float32
    assert info == expected_info
    assert torch.allclose(padded, expected, atol=1e-4)
