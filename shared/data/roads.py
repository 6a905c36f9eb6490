"""Road scenes for driving/perception: the embedded `roads` renderer and a local Cityscapes loader.

    roads                    front-camera scenes rendered with numpy, deterministic by (seed, split, index):
    roads:48x96,train=2000   a pinhole camera 1.5 m above a flat road, curved lanes (a cubic centre line),
                             solid edge lines and dashed lane lines, vehicles at several distances, sky and
                             verge texture, haze, shadows, exposure, colour cast and sensor noise. Image and
                             labels are sampled at the same pixel centres, so every label is exact.
    cityscapes:/data/cs[@64x128]  the Cityscapes folder layout read from a local path (its licence forbids
                             redistribution): leftImg8bit/ + gtFine/ (+ vehicle/ for steering), mapped to ours.

`roads` renders a dataset once into the dataset cache (shared/data/store.py, 256 scenes at a time) and
memory-maps it from there afterwards, so a large split costs disk, not memory (docs/DATA.md).
Both return a DatasetDict with train / validation / test and the columns
    image (H, W, 3) uint8, mask (H, W) uint8 (indices into CLASS_NAMES), steering float32
steering is in degrees, positive steers right; NaN where unknown (a Cityscapes frame without vehicle data).

Resize policy (Cityscapes frames here, and any image tools/predict.py reads): centre-crop to the target
aspect ratio, then resize (images: Pillow bilinear, antialiased when shrinking; masks: nearest).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data import store
from shared.data.catalog import register
from shared.errors import UserError

CLASS_NAMES = ("background", "road", "lane_marking", "vehicle")
BACKGROUND, ROAD, LANE, VEHICLE = range(4)
DEFAULT_SIZE = (64, 128)  # (height, width); 1:2 like Cityscapes frames
DEFAULT_COUNTS = {"train": 3000, "validation": 300, "test": 500}
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
FAR_M = 120.0  # ground beyond this distance is background (lost in haze)
SHOULDER_M = 0.4  # asphalt beyond the edge lines
VEHICLE_COLOURS = np.array(
    [
        (170, 25, 25),
        (25, 45, 150),
        (225, 225, 225),
        (25, 25, 28),
        (140, 140, 145),
        (200, 160, 25),
        (30, 105, 50),
        (90, 50, 30),
    ],
    np.float64,
)


@dataclass(frozen=True)
class Camera:
    height_m: float = 1.5  # above the road, looking level
    hfov_deg: float = 60.0  # horizontal field of view
    horizon: float = 0.375  # horizon row as a fraction of the image height
    wheelbase_m: float = 2.7  # kinematic bicycle model for the steering angle
    lookahead_m: float = 8.0  # pure-pursuit look-ahead distance

    def intrinsics(self, height: int, width: int) -> tuple[float, float, float]:
        """(focal length in pixels, principal column, horizon row)."""
        return width / 2 / math.tan(math.radians(self.hfov_deg) / 2), width / 2, self.horizon * height


def sample_scene(rng: np.random.Generator) -> dict:
    """Random scene parameters (metres, radians). Lateral x is positive to the right of the car."""
    lanes = int(rng.integers(2, 4))
    ego = int(rng.integers(0, lanes))
    vehicles = []
    for _ in range(int(rng.integers(0, 5))):
        vehicles.append(
            {
                "lane": int(rng.integers(0, lanes)) - ego,
                "distance": rng.uniform(6.0, 60.0),
                "jitter": rng.uniform(-0.3, 0.3),
                "width": rng.uniform(1.6, 2.0),
                "height": rng.uniform(1.3, 2.2),
                "colour": VEHICLE_COLOURS[rng.integers(0, 8)],
            }
        )
    return {
        "curvature": rng.uniform(-1 / 30, 1 / 30),  # 1/m at the car; positive bends right
        "curvature_rate": rng.uniform(-4e-4, 4e-4),  # 1/m^2 (a clothoid's linear change of curvature)
        "offset": rng.uniform(-0.5, 0.5),  # the car's lateral offset from its lane centre
        "heading": rng.uniform(-0.04, 0.04),  # the road's direction relative to the car's
        "lanes": lanes,
        "ego": ego,
        "lane_width": rng.uniform(3.2, 3.8),
        "marking_width": rng.uniform(0.15, 0.25),
        "dash": 3.0,
        "gap": rng.uniform(5.0, 9.0),
        "dash_phase": rng.uniform(0.0, 12.0),
        "yellow_edges": bool(rng.random() < 0.3),
        "vehicles": sorted(vehicles, key=lambda v: -v["distance"]),  # painted far to near
        "asphalt": rng.uniform(70, 120) * np.array([1.0, 1.0, rng.uniform(1.0, 1.08)]),
        "verge": np.array([(70, 120, 45), (150, 130, 90), (95, 110, 60)][rng.integers(0, 3)], np.float64),
        "sky": np.array([rng.uniform(60, 140), rng.uniform(120, 180), rng.uniform(190, 250)]),
        "gain": rng.uniform(0.6, 1.25),
        "cast": rng.uniform(0.92, 1.08, size=3),
        "noise": rng.uniform(2.0, 8.0),
        "shadows": [
            (
                rng.uniform(0, 1),
                rng.uniform(0.55, 1),
                rng.uniform(0.1, 0.4),
                rng.uniform(0.05, 0.2),
                rng.uniform(0.5, 0.8),
            )
            for _ in range(int(rng.integers(0, 3)))
        ],
    }


def lane_centre(scene: dict, z):
    """Lateral position (m) of the ego lane's centre line at distance z ahead."""
    return (
        -scene["offset"]
        + scene["heading"] * z
        + scene["curvature"] * z**2 / 2
        + scene["curvature_rate"] * z**3 / 6
    )


def steering_angle(scene: dict, camera: Camera = Camera()) -> float:
    """Degrees, positive right: pure pursuit of the lane centre `lookahead_m` ahead through a kinematic
    bicycle model. A car centred and aligned on a curve of curvature c gets atan(wheelbase * c)."""
    z = camera.lookahead_m
    x = lane_centre(scene, z)
    curvature = 2 * x / (x**2 + z**2)
    return math.degrees(math.atan(camera.wheelbase_m * curvature))


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Bilinearly interpolated Gaussian noise on a grid of `cell` pixels: (H, W), about unit variance."""
    grid = rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2))
    ys, xs = (np.arange(height) + 0.5) / cell, (np.arange(width) + 0.5) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    ty, tx = (ys - y0)[:, None], (xs - x0)[None, :]
    rows = grid[y0] * (1 - ty) + grid[y0 + 1] * ty  # (H, grid W)
    return rows[:, x0] * (1 - tx) + rows[:, x0 + 1] * tx


def render(scene: dict, rng: np.random.Generator, height: int, width: int, camera: Camera = Camera()):
    """One scene -> (image (H, W, 3) uint8, mask (H, W) uint8, steering degrees)."""
    f, cx, horizon = camera.intrinsics(height, width)
    v = np.arange(height, dtype=np.float64)[:, None] + 0.5  # pixel centres, (H, 1)
    u = np.arange(width, dtype=np.float64)[None, :] + 0.5  # (1, W)
    ground = np.broadcast_to(v > horizon + 1e-9, (height, width))
    depth = np.where(
        v > horizon + 1e-9, f * camera.height_m / np.maximum(v - horizon, 1e-9), np.inf
    )  # (H, 1)
    ground = ground & (depth < FAR_M)
    depth = np.minimum(depth, FAR_M)  # finite everywhere; rows above the horizon are masked by `ground`
    x = (u - cx) * depth / f  # lateral metres on the ground, (H, W)
    d = x - lane_centre(scene, depth)  # from the ego lane's centre
    bounds = (np.arange(scene["lanes"] + 1) - scene["ego"] - 0.5) * scene["lane_width"]
    half = scene["marking_width"] / 2
    road = ground & (d >= bounds[0] - SHOULDER_M) & (d <= bounds[-1] + SHOULDER_M)
    edge = (np.abs(d - bounds[0]) < half) | (np.abs(d - bounds[-1]) < half)
    dash_on = np.mod(depth + scene["dash_phase"], scene["dash"] + scene["gap"]) < scene["dash"]  # (H, 1)
    inner = np.zeros_like(edge)
    for b in bounds[1:-1]:
        inner |= np.abs(d - b) < half
    lane = ground & (edge | (inner & dash_on))
    mask = np.full((height, width), BACKGROUND, np.uint8)
    mask[road] = ROAD
    mask[lane] = LANE

    scale = width / 128
    texture = smooth_noise(rng, height, width, 6 * scale)[..., None]  # (H, W, 1)
    sky_t = np.clip(v / max(horizon, 1), 0, 1)[..., None]  # 0 at the top, 1 at the horizon, (H, 1, 1)
    image = scene["sky"] * (1 - sky_t) + np.array([215.0, 220, 225]) * sky_t + 6 * texture  # (H, W, 3)
    image[ground] = scene["verge"] * (1 + 0.15 * texture[ground])
    image[road] = scene["asphalt"] * (1 + 0.06 * texture[road])
    image[lane] = (235, 235, 230)
    if scene["yellow_edges"]:
        image[lane & edge] = (230, 190, 60)
    haze = np.broadcast_to(np.clip(depth / 250, 0, 0.45), (height, width))[ground][:, None]  # (N ground, 1)
    image[ground] = image[ground] * (1 - haze) + 200 * haze

    for car in scene["vehicles"]:  # drawn on the block of pixels whose centres fall inside the rear face
        z = car["distance"]
        centre = lane_centre(scene, z) + car["lane"] * scene["lane_width"] + car["jitter"]
        left, right = cx + f * (centre - car["width"] / 2) / z, cx + f * (centre + car["width"] / 2) / z
        top, bottom = horizon + f * (camera.height_m - car["height"]) / z, horizon + f * camera.height_m / z
        rows = np.nonzero((v[:, 0] > top) & (v[:, 0] < bottom))[0]
        cols = np.nonzero((u[0] > left) & (u[0] < right))[0]
        if not rows.size or not cols.size:
            continue
        block = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        mask[block] = VEHICLE
        rel_v = ((v[block[0]] - top) / (bottom - top))[:, 0]  # (rows,) 0 at the roof, 1 at the road
        rel_u = ((u[:, block[1]] - left) / (right - left))[0]  # (cols,)
        colour = np.broadcast_to(car["colour"], (rows.size, cols.size, 3)).copy()
        colour[(rel_v > 0.12) & (rel_v < 0.42)] = (40, 45, 55)  # rear window
        colour[np.ix_((rel_v > 0.5) & (rel_v < 0.65), (rel_u < 0.18) | (rel_u > 0.82))] = (
            210,
            25,
            20,
        )  # lights
        colour[rel_v > 0.86] = (22, 22, 22)  # bumper and tyres
        hz = min(z / 250, 0.45)
        image[block] = colour * (1 - hz) + 200 * hz

    for cu, cv, ru, rv, dark in scene["shadows"]:  # elliptic shadows on the lower image, labels unchanged
        image[((u / width - cu) / ru) ** 2 + ((v / height - cv) / rv) ** 2 < 1] *= dark
    image = image * scene["gain"] * scene["cast"] + rng.normal(0, scene["noise"], image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask, steering_angle(scene, camera)


def render_split(split: str, count: int, height: int, width: int, seed: int = 0, start: int = 0):
    """(images (N, H, W, 3) uint8, masks (N, H, W) uint8, steering (N,) float32) of scenes start..start+N-1;
    scene i depends only on (seed, split, i), so a larger split extends a smaller one."""
    images = np.empty((count, height, width, 3), np.uint8)
    masks = np.empty((count, height, width), np.uint8)
    steering = np.empty(count, np.float32)
    for j, i in enumerate(range(start, start + count)):
        rng = np.random.default_rng([seed, SPLIT_CODES[split], i])
        images[j], masks[j], steering[j] = render(sample_scene(rng), rng, height, width)
    return images, masks, steering


def features(height: int, width: int):
    import datasets

    return datasets.Features(
        {
            "image": datasets.Array3D((height, width, 3), "uint8"),
            "mask": datasets.Array2D((height, width), "uint8"),
            "steering": datasets.Value("float32"),
        }
    )


def to_dataset_dict(splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]):
    import datasets

    height, width = splits["train"][1].shape[1:]
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"image": x, "mask": m, "steering": s}, features=features(height, width)
            )
            for name, (x, m, s) in splits.items()
        }
    )


def rendered_batches(split: str, count: int, height: int, width: int, seed: int, chunk: int = 256):
    """A split's scenes as column batches of `chunk` scenes (what the dataset cache writes)."""
    for start in range(0, count, chunk):
        images, masks, steering = render_split(split, min(chunk, count - start), height, width, seed, start)
        yield {"image": images, "mask": masks, "steering": steering}


def parse_size(text: str, where: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit()) or int(height) < 16 or int(width) < 16:
        raise UserError(f"{where}: expected a size HEIGHTxWIDTH such as 64x128 (each >= 16); found {text!r}")
    return int(height), int(width)


@register("roads")
def roads(
    options: str = "",
    *,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    seed: int = 0,
    **counts: int,
):
    """Rendered road scenes. options (after 'roads:') are comma-separated: HEIGHTxWIDTH, train=N,
    validation=N, test=N, seed=N; keyword arguments say the same (counts default to DEFAULT_COUNTS)."""
    counts = {**DEFAULT_COUNTS, **counts}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            height, width = parse_size(item, "dataset roads")
        elif key == "seed" and value.isdigit():
            seed = int(value)
        elif key in DEFAULT_COUNTS and value.isdigit():
            counts[key] = int(value)
        else:
            raise UserError(
                f"dataset roads: unknown option {item!r}; expected HEIGHTxWIDTH, train=N, "
                "validation=N, test=N or seed=N, e.g. roads:48x96,train=2000"
            )
    if set(counts) != set(DEFAULT_COUNTS) or min(counts.values()) < 1:
        raise UserError(
            f"dataset roads: split sizes must be train, validation and test, each >= 1; found {counts}"
        )
    params = {"height": height, "width": width, "seed": seed, "counts": counts}
    return store.generated(  # rendered once into the dataset cache, memory-mapped from there
        "roads",
        params,
        __name__,
        features(height, width),
        lambda: {name: rendered_batches(name, n, height, width, seed) for name, n in counts.items()},
    )


def open_rgb(path: str | Path | bytes, what: str = "image"):
    """Open an 8-bit RGB image with Pillow, or raise a UserError naming the file and what to do.
    `path` may be the encoded bytes of an image instead (tools/serve.py); `what` then names it."""
    import io

    from PIL import Image, UnidentifiedImageError

    if isinstance(path, bytes):
        source, name = io.BytesIO(path), what
    else:
        source = path = Path(path)
        name = f"{what} {path}"
        if not path.is_file():
            raise UserError(f"{name} does not exist")
    try:
        img = Image.open(source)
        img.load()  # decode now, so a truncated file fails here
    except Image.DecompressionBombError as err:
        raise UserError(f"cannot read {name}: {err} (a decompression bomb?); resize it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(
            f"cannot read {name}: {str(err) or type(err).__name__} (a corrupt or non-image file)"
        ) from None
    if img.mode != "RGB":
        kind = {
            "L": "a grayscale image",
            "LA": "a grayscale image with alpha",
            "1": "a black-and-white image",
            "I": "a 32-bit grayscale image",
            "I;16": "a 16-bit grayscale image",
            "F": "a float grayscale image",
            "RGBA": "an RGB image with an alpha channel",
            "P": "a palette image",
            "CMYK": "a CMYK image",
        }
        raise UserError(
            f"{name} is {kind.get(img.mode, 'an image')} (mode {img.mode}); the model reads "
            "8-bit RGB colour images: convert it to RGB first"
        )
    return img


def centre_crop(img, height: int, width: int):
    """The largest centred region of a Pillow image with the aspect ratio height:width (the optical
    centre stays at the centre, so the horizon and the steering geometry are kept)."""
    w, h = img.size
    if w * height == h * width:
        return img
    crop_w, crop_h = min(w, round(h * width / height)), min(h, round(w * height / width))
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    return img.crop((left, top, left + crop_w, top + crop_h))


def fit_to_size(img, height: int, width: int, nearest: bool = False):
    """The resize policy: centre-crop a Pillow image to height:width, then resize to (width, height)
    (bilinear, which Pillow antialiases when shrinking; nearest for label images)."""
    from PIL import Image

    img = centre_crop(img, height, width)
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
    return img


# Cityscapes labelIds -> ours: 'road' (7) is road; the 'vehicle' category (car 26, truck 27, bus 28,
# caravan 29, trailer 30, train 31, motorcycle 32, bicycle 33) is vehicle; everything else, the ego
# vehicle (1) included, is background. Cityscapes has no lane-marking class (markings are labelled road).
CITYSCAPES_TO_OURS = np.zeros(256, np.uint8)
CITYSCAPES_TO_OURS[7] = ROAD
CITYSCAPES_TO_OURS[26:34] = VEHICLE


def cityscapes_frames(root: Path, split: str) -> list[tuple[Path, Path, Path]]:
    """(image, labelIds, vehicle json) per frame of a Cityscapes split; a missing label file is an error."""
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not images:
        raise UserError(
            f"Cityscapes folder {root} has no images in leftImg8bit/{split}/<city>/*_leftImg8bit.png"
        )
    frames = []
    for image in images:
        stem, city = image.name[: -len("_leftImg8bit.png")], image.parent.name
        label = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        if not label.is_file():
            raise UserError(
                f"Cityscapes label file {label} is missing (for {image}): unpack gtFine_trainvaltest "
                "into the same folder"
            )
        frames.append((image, label, root / "vehicle" / split / city / f"{stem}_vehicle.json"))
    return frames


def cityscapes_steering(path: Path, wheelbase_m: float = Camera.wheelbase_m) -> float:
    """Degrees, positive right, from the frame's odometry (speed m/s, yawRate rad/s, positive turning left)
    through a kinematic bicycle model; NaN without vehicle data or below 1 m/s."""
    if not path.is_file():
        return float("nan")
    try:
        data = json.loads(path.read_text())
        speed, yaw_rate = float(data["speed"]), float(data["yawRate"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise UserError(
            f"Cityscapes vehicle file {path} is unreadable ({err}); expected speed and yawRate"
        ) from None
    return float("nan") if speed < 1.0 else -math.degrees(math.atan(wheelbase_m * yaw_rate / speed))


def load_cityscapes_frame(image: Path, label: Path, height: int, width: int):
    from PIL import Image, UnidentifiedImageError

    x = np.asarray(fit_to_size(open_rgb(image, "Cityscapes image"), height, width), np.uint8)
    try:
        with Image.open(label) as raw:
            ids = np.asarray(fit_to_size(raw, height, width, nearest=True))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(f"cannot read Cityscapes label file {label}: {err}") from None
    if ids.ndim != 2 or ids.dtype.kind not in "ui":
        raise UserError(f"Cityscapes label file {label} is not a single-channel labelIds image")
    return x, CITYSCAPES_TO_OURS[np.clip(ids, 0, 255)]


@register("cityscapes")
def cityscapes(
    location: str = "",
    *,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    validation_fraction: float = 0.1,
    seed: int = 0,
):
    """Cityscapes from a local folder. Its test labels are withheld, so its val split is our test split and
    our validation split is a seeded `validation_fraction` of its train split."""
    path, at, size = location.rpartition("@")
    if at and "x" in size and size.replace("x", "").isdigit():
        height, width = parse_size(size, "dataset cityscapes")
    else:
        path = location
    if not path:
        raise UserError("dataset cityscapes needs a folder: --data cityscapes:/path/to/cityscapes[@64x128]")
    root = Path(path).expanduser()
    if not (root / "leftImg8bit").is_dir() or not (root / "gtFine").is_dir():
        raise UserError(f"{root} is not a Cityscapes folder: expected leftImg8bit/ and gtFine/ inside it")
    frames = {"train": cityscapes_frames(root, "train"), "test": cityscapes_frames(root, "val")}
    order = np.random.default_rng(seed).permutation(len(frames["train"]))
    n_val = max(1, round(validation_fraction * len(order)))
    if n_val >= len(order):
        raise UserError(
            f"Cityscapes train split of {root} has {len(order)} frame(s): too few to carve a validation split"
        )
    frames["validation"] = [frames["train"][i] for i in order[:n_val]]
    frames["train"] = [frames["train"][i] for i in order[n_val:]]
    splits = {}
    for name in ("train", "validation", "test"):
        pairs = [load_cityscapes_frame(image, label, height, width) for image, label, _ in frames[name]]
        steering = np.array([cityscapes_steering(vehicle) for *_, vehicle in frames[name]], np.float32)
        splits[name] = (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), steering)
    return to_dataset_dict(splits)


def write_sample_images(
    folder: str | Path,
    count: int = 4,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    seed: int = 0,
) -> list[Path]:
    """PNG files of test-split scenes, for trying tools/predict.py: roads_test_<i>.png."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, _, _ = render_split("test", count, height, width, seed)
    paths = [folder / f"roads_test_{i}.png" for i in range(count)]
    for path, image in zip(paths, images):
        Image.fromarray(image).save(path)
    return paths
