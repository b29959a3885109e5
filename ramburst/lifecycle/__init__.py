"""Bring-up and teardown of an instance (not named up/down at the package root: a module
`ramburst.deploy` or `ramburst.up` would replace the API functions of those names)."""
from .bringup import up
from .teardown import down

__all__ = ["down", "up"]
