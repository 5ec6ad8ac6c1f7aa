"""Block network access in the quick profile, so nothing downloads by accident.

``block_network()`` patches :meth:`socket.socket.connect`, :meth:`socket.socket.connect_ex`
and :func:`socket.create_connection`. A connection to a loopback address (``127.0.0.0/8``,
``::1``, ``localhost``) or over a Unix socket still works (Jupyter kernels, local servers);
anything else raises ``RuntimeError`` at once instead of hanging on a timeout. Host names
other than ``localhost`` are refused without resolving them, so even DNS is never touched.

``course_lib`` calls it on import when ``COURSE_OFFLINE=1``. ``unblock_network()`` undoes it.
"""
from __future__ import annotations

import ipaddress
import socket

__all__ = ["block_network", "unblock_network", "network_blocked", "is_loopback_address"]

_MESSAGE = (
    "network access is blocked in the quick profile: refused a connection to {target}. "
    "The quick profile runs offline on locally installed data (see scripts/install_assets.sh); "
    "set COURSE_PROFILE=full and unset COURSE_OFFLINE to allow downloads."
)

_originals: dict[str, object] = {}


def is_loopback_address(host) -> bool:
    """True for ``localhost``, ``127.0.0.0/8``, ``::1`` and IPv4-mapped loopback addresses."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    name = name.split("%", 1)[0]  # drop an IPv6 scope id such as ::1%lo
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False  # any other host name is refused unresolved
    if ip.is_loopback:
        return True
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(mapped is not None and mapped.is_loopback)


def _check(family, address) -> None:
    if family == getattr(socket, "AF_UNIX", object()) or isinstance(address, (str, bytes)):
        return  # Unix domain socket (a path)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # netlink and friends never leave the machine
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_loopback_address(host):
        target = f"{host}:{address[1]}" if isinstance(address, tuple) and len(address) > 1 else repr(address)
        raise RuntimeError(_MESSAGE.format(target=target))


def _guarded_connect(self, address):
    _check(self.family, address)
    return _originals["connect"](self, address)


def _guarded_connect_ex(self, address):
    _check(self.family, address)
    return _originals["connect_ex"](self, address)


def _guarded_create_connection(address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_loopback_address(host):
        port = address[1] if isinstance(address, tuple) and len(address) > 1 else "?"
        raise RuntimeError(_MESSAGE.format(target=f"{host}:{port}"))
    return _originals["create_connection"](address, *args, **kwargs)


def network_blocked() -> bool:
    """Whether :func:`block_network` is in force."""
    return bool(_originals)


def block_network() -> None:
    """Refuse every non-loopback connection from this process (idempotent)."""
    if _originals:
        return
    _originals["connect"] = socket.socket.connect
    _originals["connect_ex"] = socket.socket.connect_ex
    _originals["create_connection"] = socket.create_connection
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.create_connection = _guarded_create_connection


def unblock_network() -> None:
    """Restore the original socket functions (idempotent)."""
    if not _originals:
        return
    socket.socket.connect = _originals.pop("connect")
    socket.socket.connect_ex = _originals.pop("connect_ex")
    socket.create_connection = _originals.pop("create_connection")
