"""What a store client raises (botocore, httpx, huggingface_hub, OSError), turned into one-line UserErrors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps

from shared.errors import UserError

# Matched by class name along the error's class hierarchy, so no store client needs to be imported.
ERROR_HINTS = {
    "NoCredentialsError": "no credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
    "AWS_PROFILE), or pass --option anon=true for a public bucket",
    "PartialCredentialsError": "incomplete credentials for {url} ({err}): set both AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY",
    "OfflineModeIsEnabled": "cannot reach {url}: HF_HUB_OFFLINE is set; unset it to use the Hugging Face Hub",
    "RepositoryNotFoundError": "no Hugging Face repository behind {url} (or no access to it): check the name "
    "and HF_TOKEN; create it with `hf repo create`",
    "RevisionNotFoundError": "the revision in {url} does not exist: pass an existing branch, tag or commit",
    "GatedRepoError": "{url} is gated: accept its terms on the Hub and set HF_TOKEN",
    "HFValidationError": "{url} does not name a Hugging Face repository ({err}): expected hf://user/repo[@rev]/path",
    "HfHubHTTPError": "the Hugging Face Hub refused the request for {url} ({err})",
    "ClientError": "the store {url} refused the request ({err}): check the bucket, endpoint and credentials",
    "PermissionError": "permission denied while using {url} ({err}): check the credentials and folder permissions",
    "FileNotFoundError": "{url} was not found ({err}): check the bucket, repository or folder",
    "EndpointConnectionError": "cannot reach the store {url} ({err}): check --endpoint-url / AWS_ENDPOINT_URL "
    "and the network",
    "ConnectError": "cannot reach the store {url} ({err}): check HF_ENDPOINT and the network",
    "ConnectionError": "cannot reach the store {url} ({err}): check the endpoint and the network",
    "TimeoutError": "the store {url} did not answer in time ({err}): check the endpoint and the network",
    "TimeoutException": "the store {url} did not answer in time ({err}): check the endpoint and the network",
    "OSError": "{url}: {err}",
}


def one_line(err: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), or its class name."""
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def as_user_error(url: str, err: Exception) -> UserError | None:
    """The first hint matching the error's class hierarchy, or None for a genuine bug."""
    for cls in type(err).__mro__:
        if cls.__name__ in ERROR_HINTS:
            return UserError(ERROR_HINTS[cls.__name__].format(url=url, err=one_line(err)))
    return None


def store_errors(fn: Callable) -> Callable:
    """Decorator: what a store client raises while `fn(url=...)` runs ends as a one-line UserError."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as err:
            url = inspect.signature(fn).bind(*args, **kwargs).arguments.get("url", "the store")
            friendly = as_user_error(str(url), err)
            if friendly is None:
                raise
            raise friendly from None

    return wrapper
