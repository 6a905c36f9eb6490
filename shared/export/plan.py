"""What a model exports: its graphs, each input and output (name, dtype, dimensions, meaning), what an
input needs before it reaches the graph, and the batches verification runs. Framework-free.

Single-graph models export one graph, "model", whose inputs are the batch keys spec.forward reads and
whose outputs are what it returns for deployment (SINGLE_GRAPH). Translation models export two:

    encoder        src (batch, src_len) int64, src_mask (batch, src_len) bool
                   -> what every decoder step reads (memory) and the first recurrent state
    decoder_step   one step of greedy or beam decoding (see `decoding_section` and shared/export/decode.py)

The translation graphs' tensors are read off the zoo's public decoding API (the task's stepper: the
twin's encode / decode_step), run at two batch sizes and two source lengths: an axis that follows the
batch is "batch", one that follows the source length is "src_len", the rest are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.errors import UserError
from shared.tasks import translation

# task -> (input batch keys, outputs kept), in the order the graph takes and returns them
SINGLE_GRAPH = {
    "classification": (("image",), ("logits",)),
    "perception": (("image",), ("logits", "steering")),
    "rating": (("user", "item"), ("rating",)),
    "implicit": (("user", "item"), ("logits",)),
    "multilabel": (("sequence",), ("logits",)),
}
SEQUENCE_TASKS = ("translation",)
TFLITE_TASKS = ("classification", "perception")  # image models: what runs on a phone or in a car

DESCRIPTIONS = {
    ("classification", "image"): "images, channels last, standardised as `preprocessing` says",
    ("classification", "logits"): "class scores before softmax",
    ("perception", "image"): "road frames, channels last (RGB), standardised as `preprocessing` says",
    ("perception", "logits"): "per-pixel class scores before softmax (argmax over the last axis: the class)",
    ("perception", "steering"): "steering angle in degrees",
    ("rating", "user"): "user row indices 0..num_users-1 (preprocessing.json user_ids[i] is row i's raw id)",
    ("rating", "item"): "item row indices 0..num_items-1 (preprocessing.json item_ids[i] is row i's raw id)",
    ("rating", "rating"): "predicted rating",
    (
        "implicit",
        "user",
    ): "user row indices 0..num_users-1 (preprocessing.json user_ids[i] is row i's raw id)",
    (
        "implicit",
        "item",
    ): "item row indices 0..num_items-1 (preprocessing.json item_ids[i] is row i's raw id)",
    ("implicit", "logits"): "interaction score before the sigmoid (sigmoid: p(interact))",
    ("multilabel", "sequence"): "DNA one-hot, channels A, C, G, T in that order (see `preprocessing`)",
    ("multilabel", "logits"): "per-label scores before the sigmoid (label names in `preprocessing`)",
}
# Small preprocessing values copied into export.json (large ones, such as raw id lists, stay in
# preprocessing.json beside it).
STATE_KEYS = (
    "kind",
    "mean",
    "std",
    "class_names",
    "label_names",
    "alphabet",
    "sequence_length",
    "n_encoding",
    "ambiguous_bases",
    "length_policy",
    "num_users",
    "num_items",
    "special_tokens",
    "src_vocab_size",
    "tgt_vocab_size",
    "max_src_len",
    "max_tgt_len",
)


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # numpy's name: float32, int64, bool
    dims: tuple  # an int for a fixed axis, a name ("batch", "src_len", "tgt_len") for a dynamic one
    description: str = ""

    def entry(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": [d if isinstance(d, int) else None for d in self.dims],
            "dims": list(self.dims),
            "description": self.description,
        }


@dataclass(frozen=True)
class Graph:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def entry(self, **where) -> dict:
        """export.json's graphs[name]: where the graph is (file, signature ...) and its tensors."""
        return {
            **where,
            "inputs": [t.entry() for t in self.inputs],
            "outputs": [t.entry() for t in self.outputs],
        }


@dataclass
class Plan:
    model: str
    task: str
    graphs: dict[str, Graph]
    dims: dict[str, tuple[int, int | None]]  # dynamic dimension -> (min, max); max None: unbounded
    preprocessing: dict
    decoding: dict | None = None  # sequence models: how decoder_step is driven
    batches: list[dict] = field(default_factory=list, repr=False)  # verification batches (spec.forward's)
    examples: dict[str, dict] = field(default_factory=dict, repr=False)  # graph -> inputs to trace it with

    @property
    def sequence(self) -> bool:
        return self.decoding is not None


def plan(spec, config, model, state: dict | None) -> Plan:
    """The export plan of `model` (either twin) with its checkpoint's preprocessing state."""
    if spec.task in SINGLE_GRAPH:
        return _single_graph(spec, config, model, state)
    if spec.task in SEQUENCE_TASKS:
        return _translation(spec, config, model, state)
    raise UserError(
        f"{spec.name}'s task {spec.task!r} has no export plan: shared/export/plan.py knows "
        f"{', '.join([*SINGLE_GRAPH, *SEQUENCE_TASKS])}"
    )


def _dtype(array: np.ndarray) -> str:
    return np.asarray(array).dtype.name


def _single_graph(spec, config, model, state) -> Plan:
    inputs, outputs = SINGLE_GRAPH[spec.task]
    batches = [
        spec.example_batch(config, batch_size=4, seed=0),
        spec.example_batch(config, batch_size=1, seed=1),
    ]
    example = batches[0]
    produced = spec.forward(model, {k: example[k] for k in inputs})
    missing = [k for k in outputs if k not in produced]
    if missing:
        raise UserError(
            f"{spec.name}'s forward returns {', '.join(produced)}; the export plan wants {missing}"
        )
    graph = Graph(
        "model",
        tuple(
            Tensor(
                k, _dtype(example[k]), ("batch", *example[k].shape[1:]), DESCRIPTIONS.get((spec.task, k), "")
            )
            for k in inputs
        ),
        tuple(
            Tensor(
                k,
                _dtype(produced[k]),
                ("batch", *produced[k].shape[1:]),
                DESCRIPTIONS.get((spec.task, k), ""),
            )
            for k in outputs
        ),
    )
    return Plan(
        spec.name,
        spec.task,
        {"model": graph},
        {"batch": (1, None)},
        preprocessing(spec, config, graph, state),
        batches=batches,
        examples={"model": {k: example[k] for k in inputs}},
    )


def preprocessing(spec, config, graph: Graph | None, state: dict | None) -> dict:
    """What a caller does to raw data before the graph (the zoo's task modules do the same)."""
    kept = {k: v for k, v in (state or {}).items() if k in STATE_KEYS}
    files = ["preprocessing.json"] if state is not None else []
    if spec.task == "classification":
        image = graph.inputs[0]
        steps = (
            f"decode as {'grayscale' if image.dims[3] == 1 else 'RGB'}, resize (bilinear) to "
            f"{image.dims[1]}x{image.dims[2]}, divide the 8-bit pixels by 255, subtract `mean` and divide by "
            "`std` per channel; NHWC float32"
        )
    elif spec.task == "perception":
        image = graph.inputs[0]
        steps = (
            f"open as 8-bit RGB, centre-crop to the aspect ratio {image.dims[2]}:{image.dims[1]} (width:height), "
            f"resize (bilinear) to {image.dims[1]}x{image.dims[2]} (height x width), divide by 255, subtract `mean` "
            "and divide by `std` per channel; NHWC float32"
        )
    elif spec.task in ("rating", "implicit"):
        steps = (
            "map each raw user id to its row: its index in preprocessing.json's user_ids (the id itself when "
            "user_ids is null); items likewise with item_ids; int64"
        )
    elif spec.task == "multilabel":
        steps = (
            "one row per base, channels A, C, G, T (one-hot); N and IUPAC ambiguity codes and sequences of "
            "another length follow n_encoding, ambiguous_bases and length_policy (shared/data/dna.py); float32"
        )
    elif spec.task == "translation":
        steps = (
            "strip the source and collapse its white space to single spaces, tokenise it with tokenizer.json's "
            "'source' tokenizer (a Hugging Face tokenizers JSON: "
            "NFKC, BPE), append eos_id, right-pad with pad_id to the longest source; src_mask is True on the "
            "real tokens (EOS included). Decode greedily with the decoder_step graph (`decoding`), then turn "
            "the ids into text with the 'target' tokenizer, special tokens skipped"
        )
        kept.update(
            pad_id=translation.PAD_ID,
            unk_id=translation.UNK_ID,
            bos_id=translation.BOS_ID,
            eos_id=translation.EOS_ID,
            max_src_len=config.max_src_len,
            max_tgt_len=config.max_tgt_len,
        )
        files.append(translation.TOKENIZER_FILE)
    else:
        steps = ""
    return {**kept, "steps": steps, "files": files}


# ---- translation -----------------------------------------------------------------------------------


def _shorter(batch: dict, src_len: int, tgt_len: int) -> dict:
    """The batch cut to the first src_len source and tgt_len target positions (masks cut alike)."""
    src = {k: batch[k][:, :src_len] for k in ("src", "src_mask")}
    tgt = {k: batch[k][:, :tgt_len] for k in ("tgt_in", "tgt_out", "tgt_mask")}
    return {**src, **tgt}


def _axes(name: str, a: np.ndarray, b: np.ndarray, sizes: dict[str, tuple[int, int]]) -> tuple:
    """Dimension names of an array seen at two (batch, length) settings: which axes follow which."""
    if a.ndim != b.ndim:
        raise UserError(f"decoding array {name!r} changes rank with the batch ({a.shape} vs {b.shape})")
    dims = []
    for x, y in zip(a.shape, b.shape):
        if x == y:
            dims.append(int(x))
            continue
        found = [dim for dim, pair in sizes.items() if pair == (x, y)]
        if len(found) != 1:
            raise UserError(f"cannot tell which dimension axis of {name!r} follows ({a.shape} vs {b.shape})")
        dims.append(found[0])
    return tuple(dims)


def _translation(spec, config, model, state) -> Plan:
    task = spec.task_module
    full = spec.example_batch(config, batch_size=4, seed=0)
    s, t = full["src"].shape[1], full["tgt_in"].shape[1]
    short = _shorter(spec.example_batch(config, batch_size=1, seed=1), max(1, s // 2), max(1, t // 2))
    batches = [full, short]
    # Two settings of (batch, src_len, tgt_len) whose values differ pairwise, so each axis is told apart.
    a = _shorter(spec.example_batch(config, batch_size=2, seed=2), s, 2)
    b = _shorter(spec.example_batch(config, batch_size=3, seed=3), max(1, s - 1), 3)
    stepper = task.stepper(spec, model)
    seen = []
    for batch in (a, b):
        memory, state0 = stepper.encode(batch["src"], batch["src_mask"])
        tokens = np.full(len(batch["src"]), translation.BOS_ID, np.int64)
        logits, state1, attention = stepper.step(memory, state0, tokens)
        seen.append((memory, state0, logits, state1, attention))
    sizes = {"batch": (2, 3), "src_len": (a["src"].shape[1], b["src"].shape[1])}
    (mem_a, st_a, log_a, st1_a, att_a), (mem_b, st_b, log_b, st1_b, att_b) = seen
    prefix = set(st_a) == {"prefix"}  # the decoder re-reads every token so far (no recurrent state)
    if prefix and mem_a.keys() & {"prefix", "tokens"}:
        raise UserError("a decoding memory array is named 'prefix' or 'tokens', which decoder_step takes")

    def tensor(name: str, x, y, description: str) -> Tensor:
        return Tensor(name, _dtype(x), _axes(name, np.asarray(x), np.asarray(y), sizes), description)

    src = Tensor("src", "int64", ("batch", "src_len"), "source token ids, EOS last, PAD after the end")
    src_mask = Tensor(
        "src_mask", "bool", ("batch", "src_len"), "True on the real source tokens (EOS included)"
    )
    memory_names = [k for k in mem_a if k != "src_mask"]
    state_names = [] if prefix else list(st_a)
    encoder = Graph(
        "encoder",
        (src, src_mask),
        tuple(tensor(k, mem_a[k], mem_b[k], "read unchanged by every decoder step") for k in memory_names)
        + tuple(tensor(k, st_a[k], st_b[k], "the first decoder state") for k in state_names),
    )
    memory_inputs = tuple(
        src_mask if k == "src_mask" else tensor(k, mem_a[k], mem_b[k], "the encoder's output of this name")
        for k in mem_a
    )
    if prefix:
        step_inputs = (
            Tensor(
                "prefix",
                "int64",
                ("batch", "tgt_len"),
                "the decoder's input so far: BOS, then each token chosen",
            ),
            *memory_inputs,
        )
    else:
        step_inputs = (
            Tensor("tokens", "int64", ("batch",), "the previous token of each row (BOS at the first step)"),
            *(
                tensor(k, st_a[k], st_b[k], "the decoder state (the encoder's at the first step)")
                for k in state_names
            ),
            *memory_inputs,
        )
    step_outputs = [tensor("logits", log_a, log_b, "scores of the next token, before softmax")]
    step_outputs += [
        tensor(f"next_{k}", st1_a[k], st1_b[k], f"the decoder state for the next step's {k}")
        for k in state_names
    ]
    if att_a is not None:
        step_outputs.append(tensor("attention", att_a, att_b, "attention over the source positions"))
    decoder_step = Graph("decoder_step", step_inputs, tuple(step_outputs))
    decoding = {
        "method": "greedy",
        "bos_id": translation.BOS_ID,
        "eos_id": translation.EOS_ID,
        "pad_id": translation.PAD_ID,
        "max_len": int(config.max_tgt_len),
        "token_input": "prefix" if prefix else "tokens",
        "memory": list(mem_a),
        "state": {k: f"next_{k}" for k in state_names},
        "rule": (
            "memory arrays come from the encoder's outputs of the same name, src_mask from its input, and "
            "are fed unchanged to every step; each state starts as the encoder's output of that name and "
            "then takes decoder_step's next_<name>; token_input 'tokens' feeds the previous token (N,), "
            "'prefix' feeds BOS and every token chosen so far (N, t); pick argmax(logits), stop at eos_id or "
            "max_len"
        ),
    }
    dims = {"batch": (1, None), "src_len": (1, int(config.max_src_len))}
    # Tracing examples: batch 2; a prefix of two tokens (an axis traced at size 1 would be fixed to 1).
    step_example = {**mem_a, **st_a}
    if prefix:
        dims["tgt_len"] = (1, int(config.max_tgt_len))
        step_example["prefix"] = np.array([[translation.BOS_ID, translation.EOS_ID + 1]] * 2, np.int64)
    else:
        step_example["tokens"] = np.full(2, translation.BOS_ID, np.int64)
    return Plan(
        spec.name,
        spec.task,
        {"encoder": encoder, "decoder_step": decoder_step},
        dims,
        preprocessing(spec, config, None, state),
        decoding=decoding,
        batches=batches,
        examples={
            "encoder": {"src": a["src"], "src_mask": a["src_mask"]},
            "decoder_step": {k: step_example[k] for k in decoder_step.input_names},
        },
    )
