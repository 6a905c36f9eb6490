"""Per task: task-native JSON inputs -> checked numpy rows, and outputs -> what tools/predict.py prints.

A request holds a list of inputs; each input becomes one Parsed: the numpy rows it adds to a batch, a
key (inputs share a forward pass only when their keys are equal) and the context its answer needs.
The parsing and the answers are the task modules' own functions (shared/tasks/*), so the server and
tools/predict.py cannot drift apart:

    classification   {"image": base64 PNG/JPEG} or {"pixels": H x W (x C) ints 0..255}
                     -> {"top_k": [{"label", "index", "probability"}, ...]}       option top_k (5)
    perception       {"image": base64 RGB image} or {"pixels": H x W x 3}
                     -> {"steering_deg", "direction", "class_shares", "input_size", "resized"}
                        option mask (false): also the H x W class mask
    translation      "a sentence" or {"text": "..."}
                     -> {"translation", "log_prob", "finished", "method", "unknown_source_tokens"}
                        options beam, nbest (then "hypotheses"), max_len, length_penalty
    rating/implicit  {"user": id} -> the top_k items the user has not rated (option top_k, 5), or
                     {"user": id, "items": [ids]} -> those items' scores
    multilabel       "ACGT..." or {"id": "...", "sequence": "ACGT..."} -> {"id", "probabilities"}

A bad input is a RequestError(422) naming it (inputs[i]) and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.data.roads import fit_to_size, open_rgb
from shared.errors import UserError
from shared.metrics import softmax
from shared.serve.errors import RequestError
from shared.tasks import classification, multilabel, perception, translation
from shared.tasks.rating import Catalogue

MAX_IMAGE_PIXELS = 4096 * 4096  # decoded size limit, whatever the encoded size (a small PNG can be huge)
SEQUENCE_LENGTH_FACTOR = 16  # DNA inputs may be this many times the model's length (they are cropped)


@dataclass
class Parsed:
    arrays: dict[str, np.ndarray]  # this input's rows of the batch (leading axis)
    key: Hashable = None
    context: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(next(iter(self.arrays.values())))


def invalid(message: str) -> RequestError:
    return RequestError(422, message)


def check_fields(
    item: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...], shape: str
) -> dict:
    if not isinstance(item, dict):
        raise invalid(f"{where} must be an object {shape}; found {type(item).__name__}")
    unknown = sorted(set(item) - set(allowed))
    if unknown:
        raise invalid(f"{where} has unknown field(s) {', '.join(unknown)}; expected {shape}")
    missing = [name for name in required if name not in item]
    if missing:
        raise invalid(f"{where} lacks {', '.join(missing)}; expected {shape}")
    return item


def int_option(options: dict, name: str, default: int, low: int = 1) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise invalid(f"option {name} must be an integer >= {low}; found {value!r}")
    return value


def check_options(options: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise invalid(
            f"unknown option(s) {', '.join(unknown)}; this model takes {', '.join(known) or 'none'}"
        )


def slice_rows(outputs: Any, start: int, stop: int) -> Any:
    if isinstance(outputs, dict):
        return {k: v[start:stop] for k, v in outputs.items()}
    return outputs[start:stop]


class Adapter:
    """The serving side of one task. Subclasses define parse, run and answer."""

    options: tuple[str, ...] = ()
    input_schema = ""
    output_schema = ""

    def __init__(self, backend, server_options: dict):
        self.backend, self.spec, self.config, self.state = (
            backend,
            backend.spec,
            backend.config,
            backend.state,
        )

    def parse_options(self, options: dict) -> dict:
        check_options(options, self.options)
        return options

    def parse(self, item: Any, where: str, options: dict) -> Parsed:
        raise NotImplementedError

    def collate(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def run(self, batch: dict[str, np.ndarray], key: Hashable) -> Any:
        """Outputs with one row per batch row: a dict of arrays or a list."""
        raise NotImplementedError

    def answer(self, rows: Any, context: dict, options: dict) -> dict:
        raise NotImplementedError

    def example(self) -> list:
        """Valid inputs: the example of /v1/models, the warm-up at start and the load generator's body."""
        raise NotImplementedError

    def schema(self) -> dict:
        return {"input": self.input_schema, "output": self.output_schema, "options": list(self.options)}


# ---- images -----------------------------------------------------------------------------------------

IMAGE_SHAPE = '{"image": base64 PNG/JPEG} or {"pixels": H x W x C integers 0..255}'


def image_bytes(text: Any, where: str) -> bytes:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(text, str):
        raise invalid(
            f"{where}.image must be a base64 string of an encoded image; found {type(text).__name__}"
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.image is not valid base64 (standard alphabet, padded)") from None
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            width, height = img.size
    except Image.DecompressionBombError:  # Pillow refuses twice its own limit before we can
        raise invalid(
            f"{where}.image claims more pixels than Pillow decodes; this server decodes at most "
            f"{MAX_IMAGE_PIXELS:,}"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise invalid(
            f"cannot decode {where}.image: {err or type(err).__name__} (send a PNG or JPEG file)"
        ) from None
    if width * height > MAX_IMAGE_PIXELS:
        raise invalid(
            f"{where}.image is {width}x{height} pixels; this server decodes at most {MAX_IMAGE_PIXELS:,}"
        )
    return data


def pixel_image(value: Any, where: str, channels: tuple[int, ...]):
    """Nested lists of 0..255 integers -> a Pillow image (L for H x W or H x W x 1, RGB for H x W x 3)."""
    from PIL import Image

    try:
        array = np.asarray(value)
    except ValueError:
        raise invalid(f"{where}.pixels is ragged: every row must have the same length") from None
    if array.dtype.kind not in "iu" or array.size == 0:
        raise invalid(f"{where}.pixels must hold integers 0..255; found {array.dtype.name} values")
    if array.ndim == 2 and 1 in channels:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in channels:
        shapes = (["H x W"] if 1 in channels else []) + [f"H x W x {c}" for c in channels]
        wanted = " or ".join(shapes)
        raise invalid(f"{where}.pixels has shape {list(array.shape)}; expected {wanted}")
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS:
        raise invalid(
            f"{where}.pixels has {array.shape[0] * array.shape[1]:,} pixels; at most {MAX_IMAGE_PIXELS:,}"
        )
    if array.min() < 0 or array.max() > 255:
        raise invalid(f"{where}.pixels holds values outside 0..255 ({array.min()}..{array.max()})")
    array = array.astype(np.uint8)
    return Image.fromarray(array[..., 0], "L") if array.shape[-1] == 1 else Image.fromarray(array, "RGB")


def example_png(height: int, width: int, channels: int) -> str:
    """A smooth test pattern, PNG-encoded and base64: small and decodes the same everywhere."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    planes = [(255 * x / max(width - 1, 1)), (255 * y / max(height - 1, 1)), 128 + 0 * x][:channels]
    array = np.stack(planes, -1).astype(np.uint8)
    img = Image.fromarray(array[..., 0], "L") if channels == 1 else Image.fromarray(array, "RGB")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Classification(Adapter):
    options = ("top_k",)
    input_schema = IMAGE_SHAPE + "; any size (resized as tools/predict.py does)"
    output_schema = '{"top_k": [{"label", "index", "probability"}, ...]} most probable first'

    def parse_options(self, options: dict) -> dict:
        check_options(options, self.options)
        return {"top_k": min(int_option(options, "top_k", 5), self.config.num_classes)}

    def parse(self, item: Any, where: str, options: dict) -> Parsed:
        check_fields(item, where, ("image", "pixels"), (), IMAGE_SHAPE)
        if ("image" in item) == ("pixels" in item):
            raise invalid(f"{where} needs exactly one of image, pixels: {IMAGE_SHAPE}")
        try:
            if "image" in item:
                array = classification.load_image(
                    image_bytes(item["image"], where), self.config, f"{where}.image"
                )
            else:
                array = classification.fit_image(pixel_image(item["pixels"], where, (1, 3)), self.config)
        except UserError as err:
            raise invalid(str(err)) from None
        return Parsed({"image": classification.normalize(array[None], self.state)})

    def run(self, batch, key):
        return {"probabilities": softmax(self.backend.forward(batch)["logits"])}

    def answer(self, rows, context, options):
        names = classification.class_names(self.config, self.state)
        return {"top_k": classification.top_classes(rows["probabilities"][0], names, options["top_k"])}

    def example(self):
        return [
            {"image": example_png(self.config.image_size, self.config.image_size, self.config.in_channels)}
        ]


class Perception(Adapter):
    options = ("mask",)
    input_schema = (
        '{"image": base64 8-bit RGB image} or {"pixels": H x W x 3 integers 0..255}; any size (centre-cropped '
        "and resized as tools/predict.py does)"
    )
    output_schema = (
        '{"steering_deg", "direction", "class_shares": {class: share of pixels}, "input_size": [w, h], '
        '"resized"} (+ "mask": H x W class ids with option mask)'
    )

    def parse_options(self, options: dict) -> dict:
        check_options(options, self.options)
        mask = options.get("mask", False)
        if not isinstance(mask, bool):
            raise invalid(f"option mask must be true or false; found {mask!r}")
        return {"mask": mask}

    def parse(self, item: Any, where: str, options: dict) -> Parsed:
        check_fields(item, where, ("image", "pixels"), (), IMAGE_SHAPE)
        if ("image" in item) == ("pixels" in item):
            raise invalid(f"{where} needs exactly one of image, pixels: {IMAGE_SHAPE}")
        try:
            if "image" in item:
                img = open_rgb(image_bytes(item["image"], where), f"{where}.image")
            else:
                img = pixel_image(item["pixels"], where, (3,))
        except UserError as err:
            raise invalid(str(err)) from None
        array = np.asarray(fit_to_size(img, self.config.image_height, self.config.image_width), np.uint8)
        return Parsed({"image": perception.normalize(array[None], self.state)}, context={"size": img.size})

    def run(self, batch, key):
        outputs = self.backend.forward(batch)
        return {"mask": outputs["logits"].argmax(-1).astype(np.uint8), "steering": outputs["steering"]}

    def answer(self, rows, context, options):
        names = perception.class_names(self.config.num_classes, self.state)
        mask = rows["mask"][0]
        result = perception.frame_summary(
            mask, float(rows["steering"][0]), names, context["size"], self.config
        )
        if options["mask"]:
            result["mask"] = mask.tolist()
        return result

    def example(self):
        return [{"image": example_png(self.config.image_height, self.config.image_width, 3)}]


# ---- text -------------------------------------------------------------------------------------------


class Translation(Adapter):
    options = ("beam", "nbest", "max_len", "length_penalty")
    input_schema = '"a sentence" or {"text": "a sentence"}'
    output_schema = (
        '{"translation", "log_prob", "finished", "method", "unknown_source_tokens"} '
        '(+ "hypotheses": the nbest best with option nbest > 1)'
    )

    def parse_options(self, options: dict) -> dict:
        for name, value in options.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid(f"option {name} must be a number; found {value!r}")
        try:
            beam, nbest, max_len, alpha = translation.predict_options(options, self.config)
        except UserError as err:
            raise invalid(str(err)) from None
        if hasattr(self.config, "check_lengths"):  # a decoder with positions (the Transformer's) stops there
            try:
                self.config.check_lengths(tgt_length=max_len)
            except ValueError as err:
                raise invalid(f"option max_len={max_len}: {err}") from None
        return {"beam": beam, "nbest": nbest, "max_len": max_len, "alpha": alpha}

    def parse(self, item: Any, where: str, options: dict) -> Parsed:
        if isinstance(item, dict):
            item = check_fields(item, where, ("text",), ("text",), '{"text": "a sentence"}')["text"]
        if not isinstance(item, str):
            raise invalid(
                f'{where} must be a sentence (a string, or {{"text": "..."}}); found {type(item).__name__}'
            )
        limit = 64 * self.config.max_src_len
        if len(item) > limit:
            raise invalid(
                f"{where} is {len(item):,} characters; this model reads at most max_src_len="
                f"{self.config.max_src_len} tokens (about {limit:,} characters at most): shorten or split it"
            )
        try:
            batch = translation.encode_sources([item], self.config, self.state)
        except UserError as err:
            raise invalid(f"{where}: {err}") from None
        unknown = int((batch["src"][0] == translation.UNK_ID).sum())
        key = (options["beam"], options["max_len"], options["alpha"])
        return Parsed(batch, key, {"text": item, "unknown": unknown})

    def collate(self, parts):
        width = max(p["src"].shape[1] for p in parts)
        src = np.concatenate(
            [
                np.pad(p["src"], ((0, 0), (0, width - p["src"].shape[1])), constant_values=translation.PAD_ID)
                for p in parts
            ]
        )
        mask = np.concatenate(
            [np.pad(p["src_mask"], ((0, 0), (0, width - p["src_mask"].shape[1]))) for p in parts]
        )
        return {"src": src, "src_mask": mask}

    def run(self, batch, key):
        beam, max_len, alpha = key
        return translation.translate(self.backend.stepper(), batch, beam, max_len, alpha)

    def answer(self, rows, context, options):
        _, target_tok = translation.tokenizers(self.state)
        hyps = [translation.hypothesis_result(h, target_tok) for h in rows[0][: options["nbest"]]]
        result = {
            **hyps[0],
            "method": translation.decoding_method(options["beam"], options["alpha"]),
            "unknown_source_tokens": context["unknown"],
        }
        if options["nbest"] > 1:
            result["hypotheses"] = hyps
        return result

    def example(self):
        source_tok, _ = translation.tokenizers(self.state)
        ids = list(
            range(4, min(source_tok.get_vocab_size(), 4 + max(1, min(4, self.config.max_src_len - 2))))
        )
        return [translation.decode_ids(source_tok, ids) or "a"]


class Multilabel(Adapter):
    input_schema = '"ACGT..." or {"id": "name", "sequence": "ACGT..."}'
    output_schema = '{"id", "probabilities": {label: probability}}'

    def parse(self, item: Any, where: str, options: dict) -> Parsed:
        record = where
        if isinstance(item, dict):
            check_fields(item, where, ("id", "sequence"), ("sequence",), self.input_schema)
            record, item = item.get("id", where), item["sequence"]
            if not isinstance(record, str):
                raise invalid(f"{where}.id must be a string; found {type(record).__name__}")
        if not isinstance(item, str):
            raise invalid(f"{where} must be a DNA sequence string; found {type(item).__name__}")
        limit = SEQUENCE_LENGTH_FACTOR * self.config.sequence_length
        if len(item) > limit:
            raise invalid(
                f"{where} is {len(item):,} bases; this model reads {self.config.sequence_length} and the server "
                f"takes at most {limit:,}: send the region of interest"
            )
        try:
            x = multilabel.encode([record], ["".join(item.split())], self.config)
        except UserError as err:
            raise invalid(str(err)) from None
        return Parsed({"sequence": x}, context={"id": record})

    def run(self, batch, key):
        return {"probabilities": multilabel.sigmoid(self.backend.forward(batch)["logits"])}

    def answer(self, rows, context, options):
        return multilabel.prediction_row(context["id"], rows["probabilities"][0], self.state["label_names"])

    def example(self):
        return [
            {
                "id": "example",
                "sequence": ("ACGT" * self.config.sequence_length)[: self.config.sequence_length],
            }
        ]


# ---- recommendation ---------------------------------------------------------------------------------


class Recommendation(Adapter):
    """rating (predicted rating) and implicit (probability of an interaction)."""

    options = ("top_k",)
    input_schema = (
        '{"user": id} for the top_k unrated items, or {"user": id, "items": [id, ...]} for their scores'
    )
    output_schema = (
        '{"user", "score", "already_rated", "candidates", "items": [{"rank", "item", "score"(, "title")}]} or '
        '{"user", "score", "items": [{"item", "score"}]}'
    )

    def __init__(self, backend, server_options: dict):
        super().__init__(backend, server_options)
        self.catalogue = Catalogue(self.config, self.state, server_options)
        self.what = "predicted rating" if self.spec.task == "rating" else "p(interact)"

    def parse_options(self, options: dict) -> dict:
        check_options(options, self.options)
        return {"top_k": int_option(options, "top_k", 5)}

    def _id(self, value: Any, where: str) -> int | str:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise invalid(f"{where} must be an id (an integer or its text); found {type(value).__name__}")
        return value

    def parse(self, item: Any, where: str, options: dict) -> Parsed:
        item = check_fields(item, where, ("user", "items"), ("user",), self.input_schema)
        raw = self._id(item["user"], f"{where}.user")
        try:
            user = self.catalogue.user(raw)
            if "items" in item:
                if not isinstance(item["items"], list) or not item["items"]:
                    raise invalid(f"{where}.items must be a non-empty list of item ids")
                if len(item["items"]) > self.catalogue.num_items:
                    raise invalid(
                        f"{where}.items has {len(item['items'])} ids; the model knows {self.catalogue.num_items}"
                    )
                items = np.array(
                    [
                        self.catalogue.item(self._id(v, f"{where}.items[{i}]"))
                        for i, v in enumerate(item["items"])
                    ],
                    np.int64,
                )
            else:
                items = np.arange(self.catalogue.num_items, dtype=np.int64)
        except UserError as err:
            raise invalid(f"{where}: {err}") from None
        arrays = {"user": np.full(len(items), user, np.int64), "item": items}
        return Parsed(arrays, context={"user": raw, "row": user, "items": "items" in item, "index": items})

    def run(self, batch, key):
        outputs = self.backend.forward(batch)
        if self.spec.task == "rating":
            return {"score": np.asarray(outputs["rating"], np.float64)}
        return {"score": 1.0 / (1.0 + np.exp(-np.asarray(outputs["logits"], np.float64)))}

    def answer(self, rows, context, options):
        scores = rows["score"]
        if context["items"]:
            items = [self.catalogue.describe(int(i), s) for i, s in zip(context["index"], scores)]
            return {"user": context["user"], "score": self.what, "items": items}
        return {
            "user": context["user"],
            "score": self.what,
            **self.catalogue.top_items(context["row"], scores, options["top_k"]),
        }

    def example(self):
        return [{"user": self.catalogue.user_ids[0]}]


ADAPTERS = {
    "classification": Classification,
    "perception": Perception,
    "translation": Translation,
    "multilabel": Multilabel,
    "rating": Recommendation,
    "implicit": Recommendation,
}


def adapter_for(backend, server_options: dict) -> Adapter:
    task = backend.spec.task
    if task not in ADAPTERS:
        raise UserError(
            f"task {task!r} of {backend.spec.name} has no serving support (shared/serve/tasks.py)"
        )
    return ADAPTERS[task](backend, server_options)
