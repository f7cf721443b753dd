"""Face videos made from real photographs, tone-shifted across the Monk scale: the camera benchmark's main faces.

The stylised faces of device/camera/synthetic.py are kind to an estimator (smooth, symmetric, evenly shaded, and
drawn for the Haar cascade). This module animates two real, public-domain portraits that installed wheels ship
(device/camera/assets.py): NASA's portrait of Eileen Collins (scikit-image's `astronaut`) and the US Navy's of
Grace Hopper (matplotlib's sample data), with the pulse, breathing and motion a kiosk camera would see.

* **Skin** (`skin_mask`): a soft mask from a colour model, no face detector. A broad YCrCb skin range gives
  candidate pixels; the largest connected blob(s) are the face and neck; their redder half (Lab hue angle below
  the blob's median: blood is red, blond hair and beige walls are yellower) seeds a Gaussian in shading-free
  log-chromaticity (log R/G, log B/G of linear RGB); the mask is that Gaussian's likelihood near the blob,
  cleaned of thin rims, and 1 inside the face's filled outline (deep wrinkles, lips, brows, nostrils) except for
  eye whites and teeth. Checked by eye on both photos: face, ears and most of the visible neck in; hair, eye
  whites, teeth, flag, suit and backdrop out.
* **Tone** (`tone_shift_linear`, `tone_shift`): in linear light, each skin pixel's diffuse colour is luminance x
  chromaticity. The luminance keeps its ratio to the skin's mean, so shading and texture stay relative and
  darker skin gets the smaller absolute L* contrast it has; the chromaticity's deviation from the skin's mean
  (redness of creases, freckles, lips) shrinks with the swatch's chroma, as melanin evens out skin colour; one
  gain per channel then puts the mask-weighted mean CIELAB colour on the Monk swatch (or on a Fitzpatrick type's
  colour from synthetic.SKIN_TONES_SRGB) within 0.3. Specular highlights (luminance above the skin's 97th
  percentile) reflect at the surface and keep their level. Outside the mask the image is unchanged, bit for bit.
  With the face's shading, a mean at the lightest swatches puts lit skin above 8-bit white: the renderer keeps
  the values unclipped and exposes the frame down until 99 % of skin is below 245, as a camera metering on the
  face would (MST-1 to 4 are darker in the frame than their swatch; MST-5 to 10 are at it).
* **Pulse** on skin pixels only, along the blood-volume-pulse colour direction (synthetic.PBV_RGB), with
  synthetic.py's beat model (PPG shape, beat-to-beat and respiratory variability). Its size falls with skin
  tone (`pulse_amplitude_for`): 0.8 % peak-to-peak in green at MST-1 down to 0.35 % at MST-10, linear in the
  swatch's L*. Direction, not a fit: melanin absorbs in the epidermis, above the pulsing dermal blood, so a
  smaller share of the remitted light carries the pulse (Fallow et al. 2013, J Clin Monit Comput 27:313; the
  rPPG meta-analysis of Nowara et al. 2020, Biomed Opt Express 11:3820). The amplitude also varies over the
  face (a smooth random map, 0.6-1.4 of the mean).
* **Motion** is a smooth displacement field resampled bilinearly (never snapped to whole pixels): head sway and
  roll about the neck, breathing as a vertical motion of shoulders and head, talking as a jaw drop below the
  mouth at 3-6 syllables a second in phrases with pauses. A photograph has no depth layers, so the backdrop next
  to the silhouette stretches by a few pixels where a real one would be covered and uncovered.
* **Light**: slow drift, camera auto-exposure steps (5-15 % gain steps every 2-5 s, settling in ~0.1 s), dim
  light with more (and signal-dependent) noise, and coloured lamps. A lamp's light is added to the ambient
  light, so every pixel, skin or backdrop, changes by its own reflectance (the image is reflectance times
  light); it comes from the left, so it falls off across the frame and lights the side of the round face turned
  to it more than the flat wall; a lamp near the person lights the backdrop less (`Lamp.wall`), and its rate may
  wander. It flickers inside the heart-rate band or at a mains harmonic (100/120 Hz), which the camera samples:
  every row of a rolling shutter at its own time, integrated over the exposure (sinc), so a frame rate slightly
  off a sub-multiple turns it into a slow in-band beat (120 Hz at 29.75 fps: 1 Hz).
* **Camera**: read noise plus shot noise, capture-time jitter and dropped frames (synthetic.py's timeline).

Speed: the scene of a photograph and tone (segmentation, tone, scaling, weight fields) is prepared once (about
2 s) and cached; a frame is one bilinear remap of the moving region, a few multiply-adds and a noise slice:
about 5 ms for 640x480 on one core here, 185-220 frames/s (`kiosk bench camera-vitals` prints the figure of
each run). Sensor noise is cut from a per-video bank of unit Gaussian noise, larger than the frame by 256 px each
way, at an independent random offset per frame: drawing 0.9 M fresh normals cost 4 ms a frame. Two frames share
noise samples in a face region only when their offsets fall within the region's size of each other (a few per
cent of frame pairs, at random lags), so the region means the estimator uses stay close to white noise.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np
from numpy.typing import NDArray

from device.camera import assets
from device.camera.synthetic import (
    _PBV,
    _SYS_MU,
    SKIN_TONES_SRGB,
    FitzpatrickType,
    GroundTruth,
    SyntheticSpec,
    WrittenVideo,
    _beats,
    _capture_times,
    _illumination,
    _pulse,
    _respiration,
    _sway,
    write_frames,
)

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]
Bool = NDArray[np.bool_]

# The Monk Skin Tone scale (Ellis Monk; published by Google with these sRGB values, skintone.google, CC BY 4.0).
MONK_SRGB: dict[int, tuple[int, int, int]] = {
    1: (0xF6, 0xED, 0xE4),
    2: (0xF3, 0xE7, 0xDB),
    3: (0xF7, 0xEA, 0xD0),
    4: (0xEA, 0xDA, 0xBA),
    5: (0xD7, 0xBD, 0x96),
    6: (0xA0, 0x7E, 0x56),
    7: (0x82, 0x5C, 0x43),
    8: (0x60, 0x41, 0x34),
    9: (0x3A, 0x31, 0x2A),
    10: (0x29, 0x24, 0x20),
}
MONK_LEVELS: tuple[int, ...] = tuple(MONK_SRGB)
Tone = int | FitzpatrickType  # a Monk level 1-10, or a Fitzpatrick type through synthetic.py's mapping

PhotoName = Literal["astronaut", "hopper"]
PHOTO_NAMES: tuple[PhotoName, ...] = get_args(PhotoName)
LampColour = Literal["red", "green", "blue", "amber", "white"]
LAMP_COLOURS: tuple[LampColour, ...] = get_args(LampColour)
# Relative spectral output seen through a camera's RGB filters (RGB order, strongest channel 1): saturated LEDs
# still leak into the neighbouring channels.
LAMP_RGB: dict[LampColour, tuple[float, float, float]] = {
    "red": (1.0, 0.10, 0.06),
    "green": (0.12, 1.0, 0.22),
    "blue": (0.08, 0.28, 1.0),
    "amber": (1.0, 0.62, 0.10),
    "white": (1.0, 0.96, 0.90),
}

# Pulse amplitude in green, peak-to-peak relative, at the lightest and the darkest swatch (see the docstring).
GREEN_PULSE_LIGHTEST = 0.008
GREEN_PULSE_DARKEST = 0.0035
_PBV_GREEN = float(_PBV[1])


@dataclass(frozen=True)
class PhotoRig:
    """Where things are in a source photograph (its own pixels), measured once by eye on a grid overlay."""

    asset: str
    credit: str
    face_center: tuple[float, float]  # between the eyes and the mouth, like a detector's box centre
    face_width: float  # cheek to cheek
    head_center: tuple[float, float]  # an ellipse around the head with hair or hat: what moves with the head
    head_axes: tuple[float, float]
    mouth: tuple[float, float]
    chin_y: float
    shoulder_y: float  # top of the shoulders beside the neck
    torso_x: tuple[float, float]  # the body's horizontal extent at the shoulders
    face_px: float  # face width in the 640x480 frame by default (a kiosk sees 120-200 px)


PHOTOS: dict[PhotoName, PhotoRig] = {
    "astronaut": PhotoRig(
        asset="astronaut.png",
        credit="NASA portrait of astronaut Eileen Collins (public domain), from scikit-image",
        face_center=(228.0, 128.0),
        face_width=92.0,
        head_center=(226.0, 96.0),
        head_axes=(78.0, 82.0),
        mouth=(228.0, 146.0),
        chin_y=174.0,
        shoulder_y=205.0,
        torso_x=(20.0, 370.0),
        face_px=150.0,
    ),
    "hopper": PhotoRig(
        asset="grace_hopper.jpg",
        credit="US Navy portrait of Grace Hopper (public domain), from matplotlib",
        face_center=(265.0, 235.0),
        face_width=190.0,
        head_center=(260.0, 180.0),
        head_axes=(118.0, 158.0),
        mouth=(265.0, 276.0),
        chin_y=326.0,
        shoulder_y=345.0,
        torso_x=(0.0, 512.0),
        face_px=180.0,
    ),
}

FACE_POSITION = (0.5, 0.42)  # where the face centre sits in the frame (fractions of width and height)


# --------------------------------------------------------------------------------------------------------------
# Colour.


def tone_label(tone: Tone) -> str:
    """'MST-7' for a Monk level, the Roman numeral for a Fitzpatrick type."""
    return f"MST-{tone}" if isinstance(tone, int) else str(tone)


def tone_srgb(tone: Tone) -> tuple[int, int, int]:
    """The swatch (sRGB, 8-bit, RGB order) a tone names."""
    if isinstance(tone, int):
        if tone not in MONK_SRGB:
            raise ValueError(f"Monk level must be 1-10, not {tone}")
        return MONK_SRGB[tone]
    if tone not in SKIN_TONES_SRGB:
        raise ValueError(f"unknown skin tone {tone!r}")
    return SKIN_TONES_SRGB[tone]


def srgb_to_linear(values: NDArray[np.floating]) -> F32:
    """sRGB-encoded values in [0, 1] to linear light (IEC 61966-2-1)."""
    v = np.asarray(values, dtype=np.float32)
    return np.asarray(np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4), dtype=np.float32)


def linear_to_srgb(values: NDArray[np.floating]) -> F32:
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, None)
    return np.asarray(np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055), dtype=np.float32)


# sRGB (D65) primaries to CIE XYZ, and the D65 white: CIELAB without clipping (OpenCV's clips at 1.0, and a
# tone shift towards the lightest swatches must see the values it would clip).
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])
_LUMA_BGR = np.array([0.0722, 0.7152, 0.2126], dtype=np.float32)  # relative luminance, BGR order


def lab_of_linear(rgb: NDArray[np.floating]) -> F64:
    """CIELAB of linear-light RGB (last axis, RGB order), values above 1 allowed."""
    xyz = np.asarray(rgb, dtype=np.float64) @ _RGB_TO_XYZ.T / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def linear_of_lab(lab: NDArray[np.floating]) -> F64:
    """Linear-light RGB (RGB order) of CIELAB."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _D65
    return np.asarray(xyz @ np.linalg.inv(_RGB_TO_XYZ).T, dtype=np.float64)


def lab_of_rgb(rgb: tuple[float, float, float]) -> F64:
    """CIELAB (D65) of one sRGB colour given as 8-bit RGB."""
    return lab_of_linear(srgb_to_linear(np.asarray(rgb, dtype=np.float32) / 255.0))


def rgb_of_lab(lab: F64) -> F64:
    """sRGB (8-bit scale, RGB order, not clipped) of one CIELAB colour."""
    return np.asarray(linear_to_srgb(linear_of_lab(lab).astype(np.float32)), dtype=np.float64) * 255.0


def delta_e(lab1: F64, lab2: F64) -> float:
    """CIE76 colour difference."""
    return float(np.linalg.norm(np.asarray(lab1, dtype=np.float64) - np.asarray(lab2, dtype=np.float64)))


def image_lab(image: U8) -> F32:
    """Per-pixel CIELAB of a BGR image (L* 0-100)."""
    lin = srgb_to_linear(image.astype(np.float32) / 255.0)[..., ::-1]
    return np.asarray(lab_of_linear(lin), dtype=np.float32)


def mean_lab(lab: NDArray[np.floating], mask: F32) -> F64:
    """Mask-weighted mean of a per-pixel CIELAB image."""
    w = mask.reshape(-1).astype(np.float64)
    return np.asarray(w @ np.asarray(lab, dtype=np.float64).reshape(-1, 3) / max(float(w.sum()), 1e-9))


def mean_skin_lab(image: U8, mask: F32) -> F64:
    """Mask-weighted mean CIELAB colour of an image's skin."""
    return mean_lab(image_lab(image), mask)


def pulse_amplitude_for(tone: Tone) -> float:
    """Peak-to-peak pulse amplitude along the unit PBV direction for a tone (green gets 0.777 of it)."""
    lightest, darkest = lab_of_rgb(MONK_SRGB[1])[0], lab_of_rgb(MONK_SRGB[10])[0]
    share = float(np.clip((lab_of_rgb(tone_srgb(tone))[0] - darkest) / (lightest - darkest), 0.0, 1.0))
    green = GREEN_PULSE_DARKEST + share * (GREEN_PULSE_LIGHTEST - GREEN_PULSE_DARKEST)
    return green / _PBV_GREEN


# --------------------------------------------------------------------------------------------------------------
# Skin.


def _ramp(x: NDArray[np.floating], lo: float, hi: float) -> F32:
    return np.asarray(np.clip((x - lo) / (hi - lo), 0.0, 1.0), dtype=np.float32)


def _ellipse_kernel(size: int) -> NDArray[np.uint8]:
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)), dtype=np.uint8)


def skin_candidates(image: U8) -> F32:
    """Broad skin colour range in YCrCb (soft): every Monk tone and both photos' white balance fit inside."""
    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    return np.asarray(
        _ramp(cr, 133, 140)
        * (1 - _ramp(cr, 178, 185))
        * _ramp(cb, 75, 82)
        * (1 - _ramp(cb, 122, 128))
        * _ramp(y, 30, 50),
        dtype=np.float32,
    )


def largest_blobs(binary: NDArray[np.uint8], keep_fraction: float = 0.25) -> Bool:
    """The largest connected component and any other at least `keep_fraction` of its area."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return np.zeros(binary.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= keep_fraction * areas.max()) + 1
    return np.asarray(np.isin(labels, keep), dtype=bool)


def _log_chromaticity(image: U8) -> F32:
    """(log R/G, log B/G) of linear RGB, lightly blurred: unchanged by shading, which scales all three."""
    smooth = np.asarray(cv2.GaussianBlur(image.astype(np.float32) / 255.0, (0, 0), 1.0), dtype=np.float32)
    lin = srgb_to_linear(smooth) + 2e-3
    return np.asarray(
        np.dstack([np.log(lin[..., 2] / lin[..., 1]), np.log(lin[..., 0] / lin[..., 1])]), dtype=np.float32
    )


def _mahalanobis(features: F32, weights: F32) -> tuple[F32, F64, F64]:
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    w = weights.reshape(-1).astype(np.float64)
    mean = w @ flat / w.sum()
    centred = flat - mean
    cov = (centred * w[:, None]).T @ centred / w.sum() + 1e-6 * np.eye(flat.shape[1])
    distance = np.sqrt(np.einsum("ij,jk,ik->i", centred, np.linalg.inv(cov), centred))
    return np.asarray(distance.reshape(features.shape[:2]), dtype=np.float32), mean, cov


def skin_mask(image: U8) -> F32:
    """Soft skin mask (0-1) of a BGR photo with one person in it; all zeros if nothing skin-like is there."""
    candidates = (skin_candidates(image) > 0.5).astype(np.uint8)
    candidates = np.asarray(cv2.morphologyEx(candidates, cv2.MORPH_OPEN, _ellipse_kernel(5)), dtype=np.uint8)
    blob = largest_blobs(candidates)
    if blob.sum() < 50:
        return np.zeros(image.shape[:2], dtype=np.float32)
    lab = image_lab(image)
    lightness = lab[..., 0]
    hue = np.arctan2(lab[..., 2], lab[..., 1])
    seed = blob & (hue <= np.median(hue[blob]))
    chroma = _log_chromaticity(image)
    distance, _, _ = _mahalanobis(chroma, seed.astype(np.float32))
    distance, _, _ = _mahalanobis(chroma, (seed & (distance < 2.0)).astype(np.float32))
    near = cv2.morphologyEx(blob.astype(np.uint8), cv2.MORPH_CLOSE, _ellipse_kernel(15))
    near = cv2.dilate(near, _ellipse_kernel(9)).astype(np.float32)
    lit = _ramp(lightness, 10.0, 20.0)
    mask = (1.0 - _ramp(distance, 2.5, 3.5)) * lit * near
    mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_OPEN, _ellipse_kernel(7)), dtype=np.float32)  # thin rims
    mask *= cv2.dilate(largest_blobs((mask > 0.5).astype(np.uint8), 0.15).astype(np.uint8), _ellipse_kernel(5))
    # Shadowed skin in wrinkles and under the chin is redder and darker than the seed: close small holes, but
    # only with colours that are still near skin (eyes, teeth and spectacle frames stay out).
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse_kernel(11))
    mask = mask + (1.0 - mask) * closed * (1.0 - _ramp(distance, 4.0, 6.0)) * lit
    # What the colour model leaves out inside the face (deep wrinkles, lips, brows, nostrils) is the person's
    # skin or darker than it, and would keep the photo's own colour after a tone shift (in linear light even 5 %
    # of the original shows through the darkest swatch): inside the face's filled outline the mask is 1, except
    # for eye whites and teeth (light, without skin's redness).
    core = cv2.morphologyEx((mask > 0.5).astype(np.uint8), cv2.MORPH_CLOSE, _ellipse_kernel(15))
    inside = (core > 0) | _enclosed(np.asarray(core, dtype=np.uint8))
    # Teeth and eye whites are a* < 3 (measured: 0-2); a highlight on skin keeps skin's redness (a* 4-7).
    whites = (
        _ramp(lightness, 55.0, 70.0) * (1.0 - _ramp(lab[..., 1], 2.5, 5.0)) * (1.0 - _ramp(lab[..., 2], 12.0, 20.0))
    )
    mask = np.where(inside, 1.0 - whites, mask).astype(np.float32)
    return np.asarray(np.clip(cv2.GaussianBlur(mask, (0, 0), 1.0), 0.0, 1.0), dtype=np.float32)


def _enclosed(binary: NDArray[np.uint8]) -> Bool:
    """Pixels of `binary`'s holes: background not connected to the image border."""
    outside = np.pad((binary == 0).astype(np.uint8), 1, constant_values=1)
    flood = outside.copy()
    cv2.floodFill(flood, None, (0, 0), 2)
    return np.asarray((flood[1:-1, 1:-1] == 1), dtype=bool)


def _specular(lin: F32, mask: F32) -> F32:
    """Achromatic surface reflection: linear luminance above the skin's 97th percentile."""
    luminance = lin @ _LUMA_BGR
    skin = mask > 0.5
    if not skin.any():
        return np.zeros(mask.shape, dtype=np.float32)
    knee = float(np.percentile(luminance[skin], 97))
    return np.asarray(np.clip(luminance - knee, 0.0, None) * (mask > 0), dtype=np.float32)


def tone_shift_linear(image: U8, tone: Tone, mask: F32 | None = None, iterations: int = 8) -> F32:
    """The photo with its skin moved to `tone` (a Monk level 1-10 or a Fitzpatrick type I-VI), in linear light
    (BGR, 0-1 scale, not clipped: the lightest swatches put lit skin above 1, which a camera would expose down).

    Each skin pixel's linear-light diffuse colour is luminance x chromaticity. The luminance keeps its ratio to
    the skin's mean (shading and texture stay relative, so darker skin gets the smaller absolute contrast it
    has); the chromaticity's deviation from the mean (redness of wrinkles, freckles, lips) is scaled by the
    ratio of the swatch's CIELAB chroma to the photo's, as melanin evens out skin colour; one gain per channel
    is then refined until the mask-weighted mean CIELAB colour is within 0.3 of the swatch. Specular highlights
    (luminance above the skin's 97th percentile) reflect at the surface and keep their level. The result is
    blended with the original by the mask.
    """
    mask = skin_mask(image) if mask is None else np.asarray(mask, dtype=np.float32)
    if float(mask.sum()) < 1.0:
        raise ValueError("no skin found in the image")
    target_lab = lab_of_rgb(tone_srgb(tone))
    source_lab = mean_skin_lab(image, mask)
    keep_chroma = float(np.clip(np.hypot(*target_lab[1:]) / max(np.hypot(*source_lab[1:]), 1e-6), 0.25, 1.0))
    lin = srgb_to_linear(image.astype(np.float32) / 255.0)
    specular = _specular(lin, mask)
    diffuse = np.clip(lin - specular[..., None], 1e-5, None)
    luminance = (diffuse @ _LUMA_BGR)[..., None]
    chromaticity = diffuse / luminance
    w = mask.reshape(-1).astype(np.float64)
    mean_chromaticity = np.exp(w @ np.log(chromaticity.reshape(-1, 3).astype(np.float64)) / w.sum())
    chroma = mean_chromaticity * (chromaticity / mean_chromaticity) ** keep_chroma
    target_lin = linear_of_lab(target_lab)[::-1]  # BGR, like the image
    gain = target_lin / np.maximum(w @ (luminance * chroma).reshape(-1, 3) / w.sum(), 1e-6)
    # Each pixel keeps its luminance relative to the mean: scaling its chroma must not change it.
    chroma *= ((mean_chromaticity * gain) @ _LUMA_BGR / ((chroma * gain) @ _LUMA_BGR))[..., None]
    diffuse = np.asarray(luminance * chroma, dtype=np.float32)
    gain = target_lin / np.maximum(w @ diffuse.reshape(-1, 3).astype(np.float64) / w.sum(), 1e-6)
    weight = mask[..., None]

    def compose(gain: F64) -> F32:
        shifted = diffuse * gain.astype(np.float32) + specular[..., None]
        return np.asarray(lin + (shifted - lin) * weight, dtype=np.float32)

    out = compose(gain)
    for _ in range(iterations):
        reached = mean_lab(lab_of_linear(out[..., ::-1]), mask)
        if delta_e(reached, target_lab) < 0.3:
            break
        gain *= target_lin / np.maximum(linear_of_lab(reached)[::-1], 1e-6)
        out = compose(gain)
    return out


def encode(linear: F32) -> U8:
    """Linear-light BGR to 8-bit sRGB (clipped, rounded)."""
    return np.asarray(np.clip(np.rint(linear_to_srgb(linear) * 255.0), 0, 255), dtype=np.uint8)


def tone_shift(image: U8, tone: Tone, mask: F32 | None = None) -> U8:
    """`tone_shift_linear` as an 8-bit photo (BGR); where the mask is 0 the image is returned unchanged, bit for
    bit. The lightest swatches (MST-1 to 3) clip part of the lit skin at 255 here, which pulls the 8-bit mean a
    little below the swatch; the renderer works from the unclipped values."""
    mask = skin_mask(image) if mask is None else np.asarray(mask, dtype=np.float32)
    out = encode(tone_shift_linear(image, tone, mask))
    return np.asarray(np.where((mask > 0)[..., None], out, image), dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def photo(name: PhotoName) -> U8:
    """A source photograph (BGR), from the checked asset."""
    image = cv2.imread(str(assets.path(PHOTOS[name].asset)), cv2.IMREAD_COLOR)
    if image is None:
        raise assets.AssetError(f"cannot read {PHOTOS[name].asset}")
    return np.asarray(image, dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def photo_skin(name: PhotoName) -> F32:
    """skin_mask of a source photograph, cached (about 0.1 s)."""
    mask = skin_mask(photo(name))
    mask.setflags(write=False)
    return mask


@functools.lru_cache(maxsize=24)
def toned_photo(name: PhotoName, tone: Tone) -> F32:
    """A source photograph tone-shifted, sRGB-encoded on the 8-bit scale but neither clipped nor rounded."""
    image = np.asarray(linear_to_srgb(tone_shift_linear(photo(name), tone, photo_skin(name))) * 255.0, np.float32)
    image.setflags(write=False)
    return image


# --------------------------------------------------------------------------------------------------------------
# What to render.


@dataclass(frozen=True)
class Lamp:
    """A coloured lamp on the left of the kiosk, its light added to the room's.

    `flicker` is the amplitude (half peak-to-peak) of its modulation relative to the ambient light in its
    strongest channel, on the person at the frame centre; `share` its steady light on the same scale (a colour
    cast). `wall` is how much of it the backdrop gets relative to the person: 1 for a room lamp, less for one
    near the person (light falls with the square of distance: a lamp 0.6 m from the face and 1.5 m from the
    wall gives the wall 0.16). `wander` modulates the frequency (a fraction, over 17 s): a failing ballast or a
    screen's brightness is not a crystal.
    """

    colour: LampColour = "amber"
    hz: float = 1.2  # the light's own modulation frequency: in the band (0.7-3.5) or mains (100, 120)
    flicker: float = 0.02
    share: float = 0.25
    wall: float = 1.0
    wander: float = 0.0

    def describe(self) -> str:
        where = "room" if self.wall >= 1.0 else f"near (wall {self.wall:g})"
        wander = f" ±{self.wander:.0%} wander" if self.wander else ""
        return f"{self.colour} {where} lamp {self.hz:g} Hz{wander}, flicker {self.flicker:.1%}"


@dataclass(frozen=True)
class PhotoSpec:
    """One video of a photographed face. Defaults: a still adult in even light, 640x480 at 30 fps."""

    photo: PhotoName = "astronaut"
    tone: Tone = 5
    seconds: float = 10.0
    fps: float = 30.0
    size: tuple[int, int] = (640, 480)
    heart_rate_bpm: float = 72.0
    breathing_rate_bpm: float = 15.0
    heart_rate_variability: float = 0.03
    pulse: bool = True  # False: a no-pulse control (everything else the same)
    pulse_amplitude: float | None = None  # along the unit PBV direction, peak-to-peak; None: pulse_amplitude_for
    face_px: float | None = None  # face width in the frame; None: the photo's default
    head_motion_px: float = 0.0  # sway amplitude (translation) and the roll it implies
    breathing_amplitude_px: float = 1.5  # shoulder rise at full inhalation
    talking: bool = False
    light_level: float = 1.0  # scene brightness after the camera's gain (dim rooms: 0.4-0.5)
    illumination_drift: float = 0.0
    exposure_steps: float = 0.0  # largest auto-exposure gain step (fraction); 0: exposure locked
    lamp: Lamp | None = None
    exposure_ms: float = 4.0  # integration time: attenuates mains flicker (sinc)
    readout_fraction: float = 0.75  # rolling shutter: rows are read over this share of a frame period
    noise_sigma: float = 1.0  # read noise, 8-bit levels (1 sd)
    shot_noise: float = 1.0  # shot noise at level 128, 8-bit levels (1 sd); scales with sqrt(level)
    jitter_ms: float = 0.0
    frame_drop_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        tone_srgb(self.tone)
        if self.photo not in PHOTOS:
            raise ValueError(f"photo must be one of {PHOTO_NAMES}")
        if self.seconds <= 0 or self.fps <= 0 or self.light_level <= 0:
            raise ValueError("seconds, fps and light_level must be positive")
        if min(self.noise_sigma, self.shot_noise, self.head_motion_px, self.jitter_ms, self.exposure_steps) < 0:
            raise ValueError("amplitudes and noise must not be negative")
        if not 0.0 <= self.frame_drop_rate < 1.0:
            raise ValueError("frame_drop_rate must be in [0, 1)")

    @property
    def amplitude(self) -> float:
        if not self.pulse:
            return 0.0
        return pulse_amplitude_for(self.tone) if self.pulse_amplitude is None else self.pulse_amplitude

    @property
    def face_width_px(self) -> float:
        return PHOTOS[self.photo].face_px if self.face_px is None else self.face_px

    def timeline(self) -> SyntheticSpec:
        """The same timing as a SyntheticSpec, so synthetic.py's beat, breathing and capture models apply."""
        return SyntheticSpec(
            seconds=self.seconds,
            fps=self.fps,
            size=self.size,
            heart_rate_bpm=self.heart_rate_bpm,
            breathing_rate_bpm=self.breathing_rate_bpm,
            heart_rate_variability=self.heart_rate_variability,
            illumination_drift=self.illumination_drift,
            jitter_ms=self.jitter_ms,
            frame_drop_rate=self.frame_drop_rate,
            seed=self.seed,
        )


# --------------------------------------------------------------------------------------------------------------
# The scene: everything that does not change from frame to frame, prepared once.


@dataclass(frozen=True)
class _Scene:
    base: F32  # (H, W, 3) BGR, tone-shifted photo in the frame, 8-bit scale
    skin: F32  # (h, w, 3) BGR diffuse skin colour x mask x local pulse strength, inside `skin_box`
    skin_box: tuple[int, int, int, int]  # x0, y0, x1, y1
    mask: F32  # (H, W) skin mask in the frame
    head: F32  # weight fields (H, W): head, head x (x - pivot), head x (y - pivot), body, jaw
    head_x: F32
    head_y: F32
    body: F32
    jaw: F32
    person: F32  # (H, W) roughly where the person is (head ellipse, torso): what a near lamp lights most
    moving_box: tuple[int, int, int, int]  # where any weight is non-zero
    face_center: tuple[float, float]
    pivot: tuple[float, float]
    face_px: float


def _smoothstep(x: NDArray[np.floating], lo: float, hi: float) -> F32:
    s = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return np.asarray(s * s * (3.0 - 2.0 * s), dtype=np.float32)


def _place(image: F32, scale: float, offset: tuple[float, float], size: tuple[int, int]) -> tuple[F32, Bool]:
    """Scale the photo and put it in the frame; beyond its edges, its own border mirrored and blurred (an
    out-of-focus continuation of the backdrop). Returns the frame and where the photo itself is."""
    width, height = size
    matrix = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]], dtype=np.float64)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation)
    ox, oy = round(offset[0]), round(offset[1])
    pad = max(0, -ox, -oy, width - (ox + resized.shape[1]), height - (oy + resized.shape[0])) + 2
    padded = cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    frame = padded[pad - oy : pad - oy + height, pad - ox : pad - ox + width].astype(np.float32)
    inside = np.zeros((height, width), dtype=np.uint8)
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(width, ox + resized.shape[1]), min(height, oy + resized.shape[0])
    inside[y0:y1, x0:x1] = 1
    if not inside.all():
        blurred = cv2.GaussianBlur(frame, (0, 0), 12.0)
        distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
        fade = np.clip(distance / 24.0, 0.0, 1.0)[..., None]
        frame = frame * (1.0 - fade) + blurred * fade
    del matrix
    return np.asarray(frame, dtype=np.float32), inside.astype(bool)


def _pulse_strength(shape: tuple[int, int], seed: int, scale_px: float) -> F32:
    """Smooth random map of local pulse strength, 0.6-1.4 (perfusion differs over the face)."""
    rng = np.random.default_rng([seed, 201])
    factor = max(1, int(scale_px / 3))
    small = rng.standard_normal((shape[0] // factor + 2, shape[1] // factor + 2)).astype(np.float32)
    field = cv2.GaussianBlur(small, (0, 0), scale_px / factor)
    field = cv2.resize(field, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    field = np.asarray(field, dtype=np.float32) / (float(np.std(field)) + 1e-9)
    return np.asarray(1.0 + 0.4 * np.clip(field / 2.0, -1.0, 1.0), dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _scene(name: PhotoName, tone: Tone, face_px: float, size: tuple[int, int]) -> _Scene:
    rig = PHOTOS[name]
    width, height = size
    source = toned_photo(name, tone)
    mask_source = photo_skin(name)
    scale = face_px / rig.face_width
    fx, fy = FACE_POSITION[0] * width, FACE_POSITION[1] * height
    offset = (fx - scale * rig.face_center[0], fy - scale * rig.face_center[1])
    base, inside = _place(source, scale, offset, size)
    # The camera keeps the face out of clipping (face-priority exposure): a clipped pixel carries no pulse, and
    # the lightest swatches, at face value, saturate the lit half of a face. 99 % of skin stays below 245.
    skin_in_place = cv2.warpAffine(mask_source, np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]]), size)
    brightest = float(np.percentile(base.max(axis=2)[(skin_in_place > 0.5) & inside], 99))
    exposure = min(1.0, 245.0 / max(brightest, 1.0))
    base *= np.float32(exposure)
    matrix = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]], dtype=np.float64)
    warped_mask = cv2.warpAffine(mask_source, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    mask = np.asarray(np.where(inside, warped_mask, 0.0), dtype=np.float32)

    def at(x: float, y: float) -> tuple[float, float]:
        return scale * x + offset[0], scale * y + offset[1]

    # Diffuse skin colour for the pulse: the specular part reflects at the surface, before the blood.
    lin = srgb_to_linear(np.clip(base, 0, 255) / 255.0)
    specular = _specular(lin, mask)
    diffuse = linear_to_srgb(np.clip(lin - specular[..., None], 0.0, None)) * 255.0
    rows, cols = np.nonzero(mask > 0)
    x0, x1 = int(cols.min()), int(cols.max()) + 1
    y0, y1 = int(rows.min()), int(rows.max()) + 1
    strength = _pulse_strength((height, width), PHOTO_NAMES.index(name), 0.15 * face_px)
    skin = diffuse * (mask * strength)[..., None]
    skin_box = (x0, y0, x1, y1)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    hx, hy = at(*rig.head_center)
    rx, ry = rig.head_axes[0] * scale, rig.head_axes[1] * scale
    radius = np.sqrt(((xx - hx) / rx) ** 2 + ((yy - hy) / ry) ** 2)
    head = 1.0 - _smoothstep(radius, 1.0, 1.3)
    chin = at(0.0, rig.chin_y)[1]
    shoulders = at(0.0, rig.shoulder_y)[1]
    tx0, tx1 = at(rig.torso_x[0], 0.0)[0], at(rig.torso_x[1], 0.0)[0]
    margin = 0.2 * face_px
    torso = _smoothstep(yy, chin, shoulders) * _smoothstep(xx, tx0 - margin, tx0 + margin)
    torso *= 1.0 - _smoothstep(xx, tx1 - margin, tx1 + margin)
    body = np.asarray(torso * (1.0 - head), dtype=np.float32)
    face_skin = cv2.GaussianBlur(cv2.dilate((mask > 0.5).astype(np.float32), _ellipse_kernel(5)), (0, 0), 2.0)
    person = np.clip(1.0 - _smoothstep(radius, 0.8, 0.95) + torso + face_skin, 0.0, 1.0)
    mx, my = at(*rig.mouth)
    jaw = _smoothstep(yy, my - 0.03 * face_px, my + 0.06 * face_px)
    jaw *= 1.0 - _smoothstep(yy, chin + 0.02 * face_px, chin + 0.3 * face_px)
    jaw *= 1.0 - _smoothstep(np.abs(xx - mx), 0.28 * face_px, 0.5 * face_px)
    pivot = (at(*rig.face_center)[0], chin + 0.15 * face_px)
    mrows, mcols = np.nonzero((head + body + jaw) > 1e-4)
    moving_box = (
        min(int(mcols.min()), x0),
        min(int(mrows.min()), y0),
        max(int(mcols.max()) + 1, x1),
        max(int(mrows.max()) + 1, y1),
    )
    return _Scene(
        base=base,
        skin=np.ascontiguousarray(skin[y0:y1, x0:x1], dtype=np.float32),
        skin_box=skin_box,
        mask=mask,
        head=np.asarray(head, dtype=np.float32),
        head_x=np.asarray(head * (xx - pivot[0]), dtype=np.float32),
        head_y=np.asarray(head * (yy - pivot[1]), dtype=np.float32),
        body=body,
        jaw=np.asarray(jaw, dtype=np.float32),
        person=np.asarray(person, dtype=np.float32),
        moving_box=moving_box,
        face_center=(fx, fy),
        pivot=pivot,
        face_px=face_px,
    )


def skin_in_frame(spec: PhotoSpec) -> F32:
    """The skin mask in frame coordinates before any motion (for tests and diagnostics)."""
    return _scene(spec.photo, spec.tone, spec.face_width_px, spec.size).mask


# --------------------------------------------------------------------------------------------------------------
# The timeline: per-frame pulse, breathing, motion, talking, light.


def _rng(spec: PhotoSpec, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, 100 + stream])


def _talking(spec: PhotoSpec, t: F64) -> F64:
    """Jaw opening in [0, 1]: phrases of 1.5-4 s with 0.4-1.5 s pauses, syllables at 3-6 a second, each a
    raised-cosine opening of random depth."""
    rng = _rng(spec, 5)
    out = np.zeros_like(t)
    clock = rng.uniform(0.2, 1.0)
    while clock < spec.seconds + 1.0:
        phrase_end = clock + rng.uniform(1.5, 4.0)
        rate = rng.uniform(3.0, 6.0)
        while clock < phrase_end:
            duration = rng.uniform(0.8, 1.2) / rate
            inside = (t >= clock) & (t < clock + duration)
            out[inside] += rng.uniform(0.4, 1.0) * np.sin(np.pi * (t[inside] - clock) / duration) ** 2
            clock += duration
        clock += rng.uniform(0.4, 1.5)
    return out


def _exposure(spec: PhotoSpec, t: F64) -> F64:
    """Auto-exposure gain: steps of 5 % to `exposure_steps` every 2-5 s, each settling exponentially (0.1 s)."""
    if spec.exposure_steps <= 0:
        return np.ones_like(t)
    rng = _rng(spec, 6)
    log_gain = np.zeros_like(t)
    level, clock = 0.0, rng.uniform(1.0, 3.0)
    while clock < spec.seconds:
        size = rng.uniform(0.05, max(0.05, spec.exposure_steps))
        step = math.log1p(size) if level <= 0 else -math.log1p(size)  # hunting around the set point
        level += step
        log_gain += step * (1.0 - np.exp(-np.clip(t - clock, 0.0, None) / 0.1))
        clock += rng.uniform(2.0, 5.0)
    return np.asarray(np.exp(log_gain), dtype=np.float64)


@dataclass(frozen=True)
class _Plan:
    t: F64
    nominal_index: NDArray[np.int64]
    dropped_index: NDArray[np.int64]
    timeline: SyntheticSpec
    pulse: F64
    respiration: F64
    head_dx: F64
    head_dy: F64
    head_angle_deg: F64
    body_dx: F64
    body_dy: F64
    jaw_px: F64
    light: F64  # global gain: light level, drift, auto-exposure
    lamp_phase: float


def _plan(spec: PhotoSpec) -> _Plan:
    timeline = spec.timeline()
    t, nominal, dropped = _capture_times(timeline)
    beats = _beats(timeline)
    respiration = _respiration(timeline, t)
    rng = _rng(spec, 4)
    face_px = spec.face_width_px
    dx = spec.head_motion_px * _sway(rng, t)
    dy = spec.head_motion_px * _sway(rng, t)
    angle = np.degrees(spec.head_motion_px / (0.5 * face_px) * 0.5 * _sway(rng, t))
    body_dy = -spec.breathing_amplitude_px * respiration
    jaw = np.zeros_like(t)
    if spec.talking:
        jaw = 0.05 * face_px * _talking(spec, t)
        # Speech moves the head too: small nods and tilts with the phrase.
        smooth = np.convolve(jaw, np.ones(9) / 9, mode="same")
        dy = dy + 0.08 * smooth
        angle = angle + 0.05 * smooth
    return _Plan(
        t=t,
        nominal_index=nominal,
        dropped_index=dropped,
        timeline=timeline,
        pulse=_pulse(beats, t),
        respiration=respiration,
        head_dx=dx,
        head_dy=dy + 0.8 * body_dy,
        head_angle_deg=np.asarray(angle, dtype=np.float64),
        body_dx=0.2 * dx,
        body_dy=body_dy,
        jaw_px=jaw,
        light=spec.light_level * _illumination(timeline, t) * _exposure(spec, t),
        lamp_phase=float(_rng(spec, 7).uniform(0, 2 * math.pi)),
    )


def lamp_modulation(spec: PhotoSpec, t: float, rows: int, phase: float = 0.0) -> F64:
    """The lamp's modulation (-1..1 scaled by exposure averaging) as each row of a frame captured at `t` saw it.

    Rows of a rolling shutter are exposed one after another over `readout_fraction` of a frame period; each
    integrates the light over `exposure_ms`, which scales a sinusoid by sinc(f x exposure).
    """
    assert spec.lamp is not None
    hz, wander, period = spec.lamp.hz, spec.lamp.wander, 17.0
    row_times = t + np.arange(rows, dtype=np.float64) / rows * spec.readout_fraction / spec.fps
    attenuation = float(np.sinc(hz * spec.exposure_ms / 1000.0))
    angle = 2 * math.pi * hz * row_times - hz * wander * period * np.cos(2 * math.pi * row_times / period) + phase
    return np.asarray(attenuation * np.sin(angle), dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------
# Rendering.


_NOISE_MARGIN = 256


def _noise_bank(spec: PhotoSpec) -> F32:
    height = spec.size[1] + _NOISE_MARGIN
    width = spec.size[0] + _NOISE_MARGIN
    bank = np.empty((height, width, 3), dtype=np.float32)
    cv2.setRNGSeed(int(_rng(spec, 8).integers(0, 2**31 - 1)))
    cv2.randn(bank, np.zeros(3), np.ones(3))
    return bank


def _noise_sigma(spec: PhotoSpec, scene: _Scene) -> F32:
    """Per-pixel noise sd for the scene's typical level: read noise plus shot noise (sd grows as sqrt(level))."""
    level = np.clip(scene.base * spec.light_level, 0.0, 255.0)
    return np.asarray(np.sqrt(spec.noise_sigma**2 + spec.shot_noise**2 * level / 128.0), dtype=np.float32)


def _lamp_field(spec: PhotoSpec, scene: _Scene) -> F32 | None:
    """The lamp's light at each pixel relative to the ambient (BGR), before modulation.

    From the left: it falls off across the frame (1.4 at the near edge, 0.6 at the far one), lights the side of
    the face turned to it more (+-40 % across the head: the face is round, the wall flat) and the backdrop by
    `wall` of what the person gets.
    """
    if spec.lamp is None:
        return None
    width, height = spec.size
    xx = np.arange(width, dtype=np.float32)[None, :]
    falloff = np.broadcast_to(np.linspace(1.4, 0.6, width, dtype=np.float32)[None, :], (height, width))
    person = scene.person
    lateral = np.clip((scene.face_center[0] - xx) / (0.8 * scene.face_px), -1.0, 1.0)
    strength = falloff * (spec.lamp.wall + (1.0 - spec.lamp.wall) * person) * (1.0 + 0.4 * lateral * person)
    rgb = np.asarray(LAMP_RGB[spec.lamp.colour], dtype=np.float32)[::-1]
    return np.ascontiguousarray(strength[..., None] * rgb[None, None, :], dtype=np.float32)


def render_frames(spec: PhotoSpec) -> Iterator[tuple[float, U8]]:
    """Yield (capture time s, HxWx3 uint8 BGR) for every delivered frame, in order; deterministic for a seed.

    Per frame: the pulse is added to the skin box of a work copy of the scene, the moving region is remapped
    (bilinear, float maps built with OpenCV's multiply-adds: numpy's temporaries cost more than the remap),
    then light and noise; OpenCV's element-wise calls throughout, and no full-frame copies.
    """
    scene = _scene(spec.photo, spec.tone, spec.face_width_px, spec.size)
    plan = _plan(spec)
    width, height = spec.size
    pbv_bgr = _PBV[::-1].astype(np.float32)
    amplitude = spec.amplitude
    bank = _noise_bank(spec)
    sigma = _noise_sigma(spec, scene)
    lamp = _lamp_field(spec, scene)
    offsets = _rng(spec, 9).integers(0, _NOISE_MARGIN, size=(len(plan.t), 2))
    sx0, sy0, sx1, sy1 = scene.skin_box
    mx0, my0, mx1, my1 = scene.moving_box
    grid_x, grid_y = np.meshgrid(np.arange(mx0, mx1, dtype=np.float32), np.arange(my0, my1, dtype=np.float32))
    head, head_x, head_y, body, jaw = (
        np.ascontiguousarray(a[my0:my1, mx0:mx1])
        for a in (scene.head, scene.head_x, scene.head_y, scene.body, scene.jaw)
    )
    map_x, map_y = np.empty_like(grid_x), np.empty_like(grid_y)
    work = scene.base.copy()  # the scene with this frame's pulse: only its skin box ever changes
    warped = scene.base.copy()  # ... after motion: only the moving box (which holds the skin box) changes
    base_skin = scene.base[sy0:sy1, sx0:sx1]
    for i, t in enumerate(plan.t):
        if amplitude > 0:
            gain = np.diag(amplitude * -plan.pulse[i] * pbv_bgr).astype(np.float32)
            work[sy0:sy1, sx0:sx1] = cv2.add(base_skin, cv2.transform(scene.skin, gain))
        # Inverse map, the source of every output pixel: head roll about the neck and sway, breathing, jaw.
        a = math.radians(plan.head_angle_deg[i])
        cos, sin = math.cos(a), math.sin(a)
        cv2.scaleAdd(head, -float(plan.head_dx[i]), grid_x, dst=map_x)
        cv2.scaleAdd(head_x, cos - 1.0, map_x, dst=map_x)
        cv2.scaleAdd(head_y, sin, map_x, dst=map_x)
        cv2.scaleAdd(body, -float(plan.body_dx[i]), map_x, dst=map_x)
        cv2.scaleAdd(head, -float(plan.head_dy[i]), grid_y, dst=map_y)
        cv2.scaleAdd(head_x, -sin, map_y, dst=map_y)
        cv2.scaleAdd(head_y, cos - 1.0, map_y, dst=map_y)
        cv2.scaleAdd(body, -float(plan.body_dy[i]), map_y, dst=map_y)
        if plan.jaw_px[i] != 0.0:
            cv2.scaleAdd(jaw, -float(plan.jaw_px[i]), map_y, dst=map_y)
        cv2.remap(work, map_x, map_y, cv2.INTER_LINEAR, dst=warped[my0:my1, mx0:mx1], borderMode=cv2.BORDER_REFLECT)
        light = float(plan.light[i])
        if lamp is None:
            frame = cv2.addWeighted(warped, light, warped, 0.0, 0.0)
        else:
            level = lamp_modulation(spec, float(t), height if spec.lamp.hz > spec.fps / 2 else 1, plan.lamp_phase)  # type: ignore[union-attr]
            level = spec.lamp.share + spec.lamp.flicker * level  # type: ignore[union-attr]
            if len(level) == 1:
                illuminant = cv2.addWeighted(lamp, float(level[0]), lamp, 0.0, light)
            else:  # rolling shutter: each row its own phase of the mains flicker
                rows = np.ascontiguousarray(np.broadcast_to(level.astype(np.float32)[:, None, None], lamp.shape))
                product = cv2.multiply(lamp, rows)
                illuminant = cv2.addWeighted(product, 1.0, product, 0.0, light)
            frame = cv2.multiply(warped, illuminant)
        dx, dy = offsets[i]
        frame = cv2.add(frame, cv2.multiply(bank[dy : dy + height, dx : dx + width], sigma))
        yield float(t), np.asarray(cv2.convertScaleAbs(frame), dtype=np.uint8)


def ground_truth(spec: PhotoSpec) -> GroundTruth:
    """What render_frames used, at the capture times of the frames it yields (synthetic.py's GroundTruth)."""
    plan = _plan(spec)
    scene = _scene(spec.photo, spec.tone, spec.face_width_px, spec.size)
    beats = _beats(plan.timeline)
    onsets = beats.onsets[:-1]
    inside = (onsets >= 0) & (onsets < spec.seconds)
    mean_period = float(np.mean(beats.periods[inside])) if inside.any() else 60.0 / spec.heart_rate_bpm
    peaks = onsets + _SYS_MU * beats.periods
    fx, fy = scene.face_center
    px, py = scene.pivot
    angle = np.radians(plan.head_angle_deg)
    cx = px + np.cos(angle) * (fx - px) - np.sin(angle) * (fy - py) + plan.head_dx
    cy = py + np.sin(angle) * (fx - px) + np.cos(angle) * (fy - py) + plan.head_dy
    modulation = -plan.pulse if spec.pulse else np.zeros_like(plan.pulse)
    return GroundTruth(
        t=plan.t,
        nominal_index=plan.nominal_index,
        dropped_index=plan.dropped_index,
        pulse=plan.pulse if spec.pulse else np.zeros_like(plan.pulse),
        skin_modulation=modulation,
        respiration=plan.respiration,
        heart_rate_bpm=60.0 / mean_period,
        breathing_rate_bpm=spec.breathing_rate_bpm,
        beat_times=peaks[(peaks >= 0) & (peaks < spec.seconds)] if spec.pulse else np.zeros(0),
        face_center=np.column_stack([cx, cy]),
        head_angle_deg=plan.head_angle_deg,
        body_dy=plan.body_dy,
        pulse_direction_rgb=(float(_PBV[0]), float(_PBV[1]), float(_PBV[2])),
    )


def no_pulse(spec: PhotoSpec) -> PhotoSpec:
    """The same video without a pulse: the control for it."""
    return replace(spec, pulse=False)


def write_video(spec: PhotoSpec, path: Path | str) -> WrittenVideo:
    """Render to a lossless video plus `<video>.timestamps.json` with every frame's capture time, as
    synthetic.write_video does (`kiosk camera vitals` reads both)."""
    described = json.loads(json.dumps(asdict(spec), default=str))
    return write_frames(render_frames(spec), Path(path), spec.timeline(), described)
