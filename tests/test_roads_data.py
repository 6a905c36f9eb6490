"""shared/data/roads.py: the road-scene renderer's labels are exact and deterministic, and the Cityscapes
loader maps a folder of the real layout (written here, small) to our classes, or names what is missing."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from shared.data import load, roads
from shared.errors import UserError

H, W = 32, 64


def quiet_scene(**changes) -> dict:
    """A straight two-lane road, the car centred in the left lane; no vehicles, shadows, haze noise."""
    scene = roads.sample_scene(np.random.default_rng(0))
    scene.update(
        curvature=0.0,
        curvature_rate=0.0,
        offset=0.0,
        heading=0.0,
        lanes=2,
        ego=0,
        lane_width=3.5,
        marking_width=0.25,
        vehicles=[],
        shadows=[],
        gain=1.0,
        cast=np.ones(3),
        noise=0.0,
        yellow_edges=False,
    )
    scene.update(changes)
    return scene


def test_renderer_is_deterministic_per_scene_and_split():
    first = roads.render_split("train", 3, H, W, seed=0)
    again = roads.render_split("train", 5, H, W, seed=0)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b[:3])  # scene i depends on (seed, split, i) only
    assert not np.array_equal(first[0], roads.render_split("train", 3, H, W, seed=1)[0])
    assert not np.array_equal(first[0], roads.render_split("validation", 3, H, W, seed=0)[0])


def test_every_class_appears_and_steering_spans_both_directions():
    images, masks, steering = roads.render_split("train", 40, H, W)
    assert images.dtype == np.uint8 and images.shape == (40, H, W, 3)
    assert set(np.unique(masks)) == {roads.BACKGROUND, roads.ROAD, roads.LANE, roads.VEHICLE}
    assert steering.min() < -2.0 and steering.max() > 2.0 and np.isfinite(steering).all()


def test_straight_centred_road_labels_where_the_geometry_puts_them():
    camera = roads.Camera()
    scene = quiet_scene()
    image, mask, steering = roads.render(scene, np.random.default_rng(0), 64, 128, camera)
    f, cx, horizon = camera.intrinsics(64, 128)
    assert steering == pytest.approx(0.0, abs=1e-9)
    assert (mask[: int(horizon)] == roads.BACKGROUND).all()  # the sky
    row = 40  # the ground at depth f * h / (v - horizon), about 10 m
    depth = f * camera.height_m / (row + 0.5 - horizon)
    column = lambda x: int(cx + f * x / depth)  # noqa: E731  (pixel column of lateral position x)
    assert mask[row, column(0.0)] == roads.ROAD  # the ego lane's centre
    assert mask[row, column(-0.5 * 3.5)] == roads.LANE  # the left edge line
    assert mask[row, column(1.5 * 3.5)] == roads.LANE  # the right edge line
    # The centre line is dashed: 3 m painted, then a gap, in phase with dash_phase along the depth.
    period = scene["dash"] + scene["gap"]
    for into_period, label in ((1.0, roads.LANE), (scene["dash"] + 1.0, roads.ROAD)):
        phased = quiet_scene(dash_phase=(into_period - depth) % period)
        assert (
            roads.render(phased, np.random.default_rng(0), 64, 128, camera)[1][row, column(0.5 * 3.5)]
            == label
        )
    assert mask[row, column(-0.5 * 3.5 - roads.SHOULDER_M - 0.5)] == roads.BACKGROUND  # the verge
    # Labels are exact: every marking pixel is brighter than every asphalt pixel (no noise, no shadow).
    brightness = image.astype(int).sum(-1)
    assert brightness[mask == roads.LANE].min() > brightness[mask == roads.ROAD].max()


def test_steering_is_the_curvature_a_centred_car_follows():
    camera = roads.Camera()
    for curvature in (1 / 40, -1 / 60):
        steering = roads.steering_angle(quiet_scene(curvature=curvature), camera)
        # Pure pursuit on a circle of radius R through the car steers onto that circle: atan(L / R),
        # up to the parabola's deviation from the circle at the look-ahead distance (under 1% here).
        assert steering == pytest.approx(math.degrees(math.atan(camera.wheelbase_m * curvature)), rel=0.01)
    _, mask, steering = roads.render(quiet_scene(curvature=1 / 40), np.random.default_rng(0), 64, 128)
    assert steering > 0  # positive steers right ...
    far_row = np.nonzero((mask == roads.ROAD).any(1))[0][2]
    assert np.nonzero(mask[far_row] == roads.ROAD)[0].mean() > 64  # ... where the road bends right
    assert roads.steering_angle(quiet_scene(offset=0.5)) < 0  # right of the lane centre: steer left


def test_a_vehicle_is_labelled_on_its_rear_face_and_hides_the_road():
    camera = roads.Camera()
    car = {
        "lane": 0,
        "distance": 12.0,
        "jitter": 0.0,
        "width": 1.8,
        "height": 1.5,
        "colour": roads.VEHICLE_COLOURS[0],
    }
    _, mask, _ = roads.render(quiet_scene(vehicles=[car]), np.random.default_rng(0), 64, 128, camera)
    f, cx, horizon = camera.intrinsics(64, 128)
    centres = np.arange(128) + 0.5
    columns = ((centres > cx + f * -0.9 / 12) & (centres < cx + f * 0.9 / 12)).sum()
    rows = ((centres[:64] > horizon) & (centres[:64] < horizon + f * 1.5 / 12)).sum()  # roof at camera height
    assert (mask == roads.VEHICLE).sum() == rows * columns


def test_roads_options_and_their_errors():
    data = load("roads:16x32,train=4,validation=2,test=3,seed=5")
    assert {k: len(v) for k, v in data.items()} == {"train": 4, "validation": 2, "test": 3}
    arrays = data["train"].with_format("numpy", dtype=None)[:]
    assert arrays["image"].shape == (4, 16, 32, 3) and arrays["mask"].dtype == np.uint8
    np.testing.assert_array_equal(arrays["image"], roads.render_split("train", 4, 16, 32, seed=5)[0])
    with pytest.raises(UserError, match="unknown option 'lanes=3'"):
        load("roads:lanes=3")
    with pytest.raises(UserError, match="HEIGHTxWIDTH"):
        load("roads:64by128")


def test_fit_to_size_centre_crops_to_the_aspect_ratio_then_resizes():
    columns = np.tile(np.arange(30, dtype=np.uint8), (10, 1))  # 30 wide, 10 high; pixel value = column
    out = np.asarray(roads.fit_to_size(Image.fromarray(columns), 8, 16, nearest=True))
    assert out.shape == (8, 16)
    assert out.min() >= 5 and out.max() <= 24  # the centred 20 x 10 region (2:1) of columns 5..24


# --- Cityscapes, through small files of the real layout ---------------------------------------------------


def write_frame(root, split, city, index, ids, vehicle=None, image=None):
    stem = f"{city}_{index:06d}_000019"
    left = root / "leftImg8bit" / split / city
    gt = root / "gtFine" / split / city
    left.mkdir(parents=True, exist_ok=True)
    gt.mkdir(parents=True, exist_ok=True)
    pixels = image if image is not None else np.full((*ids.shape, 3), 100 + index, np.uint8)
    Image.fromarray(pixels).save(left / f"{stem}_leftImg8bit.png")
    Image.fromarray(ids.astype(np.uint8)).save(gt / f"{stem}_gtFine_labelIds.png")
    if vehicle is not None:
        (root / "vehicle" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "vehicle" / split / city / f"{stem}_vehicle.json").write_text(json.dumps(vehicle))
    return left / f"{stem}_leftImg8bit.png", gt / f"{stem}_gtFine_labelIds.png"


def label_ids() -> np.ndarray:
    """16 x 32 labelIds: ego vehicle (1) bottom, road (7), car (26), bicycle (33), person (24), sky (23)."""
    ids = np.full((16, 32), 23, np.uint8)
    ids[8:, :] = 7
    ids[8:12, 4:10] = 26
    ids[8:12, 20:24] = 33
    ids[6:12, 14:16] = 24
    ids[14:, :] = 1
    return ids


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / "cityscapes"
    for i in range(3):
        write_frame(
            root, "train", "aachen", i, label_ids(), vehicle={"speed": 10.0, "yawRate": -0.05 * (i + 1)}
        )
    write_frame(root, "val", "lindau", 0, label_ids())  # no vehicle data: steering unknown
    return root


def test_cityscapes_layout_maps_classes_splits_and_steering(cityscapes_root):
    data = load(f"cityscapes:{cityscapes_root}@16x32")
    assert {k: len(v) for k, v in data.items()} == {"train": 2, "validation": 1, "test": 1}
    test = data["test"].with_format("numpy", dtype=None)[:]
    mask = test["mask"][0]
    expected = np.zeros((16, 32), np.uint8)  # sky, person and ego vehicle are background
    expected[8:14, :] = roads.ROAD
    expected[8:12, 4:10] = roads.VEHICLE  # car
    expected[8:12, 20:24] = roads.VEHICLE  # bicycle: Cityscapes' vehicle category
    expected[8:12, 14:16] = roads.BACKGROUND  # the person standing on the road
    np.testing.assert_array_equal(mask, expected)
    assert np.isnan(test["steering"][0])  # no vehicle/ json for this frame
    steering = np.concatenate(
        [data[s].with_format("numpy", dtype=None)[:]["steering"] for s in ("train", "validation")]
    )
    # yawRate < 0 turns right: atan(2.7 m * 0.05 k / 10 m/s) to the right, k = 1, 2, 3
    expected_steering = [math.degrees(math.atan(2.7 * 0.05 * k / 10)) for k in (1, 2, 3)]
    np.testing.assert_allclose(np.sort(steering), expected_steering, rtol=1e-5)


def test_cityscapes_frames_are_resized_by_the_documented_policy(cityscapes_root):
    data = load(f"cityscapes:{cityscapes_root}")  # default 64 x 128: upsampled 4x, nearest for labels
    mask = data["test"].with_format("numpy", dtype=None)[:]["mask"][0]
    assert mask.shape == (64, 128) and (mask[32:44, 16:40] == roads.VEHICLE).all()


def test_cityscapes_missing_label_file_is_named(cityscapes_root):
    _, label = write_frame(cityscapes_root, "train", "bremen", 7, label_ids())
    label.unlink()
    with pytest.raises(UserError, match=f"label file {label} is missing"):
        load(f"cityscapes:{cityscapes_root}@16x32")


def test_cityscapes_bad_folders_and_files_are_one_line_errors(tmp_path, cityscapes_root):
    with pytest.raises(UserError, match="is not a Cityscapes folder"):
        load(f"cityscapes:{tmp_path}")
    with pytest.raises(UserError, match="needs a folder"):
        load("cityscapes:")
    gray, _ = write_frame(cityscapes_root, "val", "lindau", 1, label_ids())
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(gray)
    with pytest.raises(UserError, match=f"Cityscapes image {gray} is a grayscale"):
        load(f"cityscapes:{cityscapes_root}@16x32")
    gray.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(UserError, match=f"cannot read Cityscapes image {gray}"):
        load(f"cityscapes:{cityscapes_root}@16x32")
