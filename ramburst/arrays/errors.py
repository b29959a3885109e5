"""The errors of the arrays store, and the librados return code of a failed request as one of them."""
from __future__ import annotations

import errno

from ..errors import RamburstError


class StoreFullError(RamburstError):
    """The cluster (or the pool's quota) is full: the value was not stored."""


class ValueTooLargeError(RamburstError, ValueError):
    """A value larger than one RADOS write may carry (osd_max_write_size, 90 MiB by default)."""


def rados_error(rv: int, what: str) -> Exception:
    """The exception for librados return code `rv` (negative errno) of the request `what`."""
    code = -rv
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"{what} failed: the cluster is full ({errno.errorcode.get(code, code)}); "
                              "delete arrays or deploy a bigger instance")
    if code in (errno.EFBIG, errno.E2BIG, errno.EMSGSIZE):
        return ValueTooLargeError(f"{what} failed: value too large for one RADOS object ({errno.errorcode[code]})")
    return OSError(code, f"{what} failed: {errno.errorcode.get(code, code)}")
