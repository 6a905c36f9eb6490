"""Share checkpoints through a store: a local folder, file://, s3://, hf:// or any installed fsspec protocol.

A store is a folder (a prefix of a bucket, a Hugging Face repository) laid out as

    index.json                 every model and version: framework, data, metrics, parity; `ls` reads only this
    README.md                  the store's model card (Hugging Face YAML front matter), generated from the index
    <name>/<version>/          one checkpoint folder of shared/checkpoint.py, manifest.json included

One job per module:

    errors.py      what a store client raises, as one-line UserErrors
    transport.py   opening a store (Store, hf:// targets, --option/--endpoint-url) and moving bytes
    integrity.py   names, manifests and safetensors headers checked before anything is trusted
    index.py       index.json: read, add a version, encode
    card.py        model card front matter and the store's README.md
    evidence.py    what a push records from `tools/crosscheck.py --json` and `tools/evaluate.py --json`
    publish.py     push
    retrieve.py    locate, pull, fetch (the sha256-keyed cache), ls, show; resolve/load for any checkpoint

The hub sits above the checkpoint format (it calls shared/checkpoint.py, never the reverse) and below
everything that needs a model: it imports nothing from zoo/, shared/tasks or shared/train, and nothing
here imports torch or tensorflow.
"""

from shared.hub.card import front_matter, store_card
from shared.hub.errors import store_errors
from shared.hub.index import SCHEMA, read_index
from shared.hub.integrity import check_file_name, check_manifest, check_name, check_safetensors
from shared.hub.publish import push
from shared.hub.retrieve import Version, cache_root, fetch, list_store, load, locate, pull, resolve, show
from shared.hub.transport import HfTarget, Store, hf_operations, is_store_url, parse_hf, storage_options

__all__ = [
    "SCHEMA",
    "HfTarget",
    "Store",
    "Version",
    "cache_root",
    "check_file_name",
    "check_manifest",
    "check_name",
    "check_safetensors",
    "fetch",
    "front_matter",
    "hf_operations",
    "is_store_url",
    "list_store",
    "load",
    "locate",
    "parse_hf",
    "pull",
    "push",
    "read_index",
    "resolve",
    "show",
    "storage_options",
    "store_card",
    "store_errors",
]
