"""The error of a config that cannot run, raised before any job: its message starts with the
config key it is about (``data.root: ...``). Dataset modules raise it from their checks; the
workflow turns it into one line naming the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    pass


def as_config_error(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``check(*args, **kwargs)``, its missing-file and value errors as ``ConfigError``."""
    try:
        return check(*args, **kwargs)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
