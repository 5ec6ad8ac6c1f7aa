"""course_lib.netguard: the quick profile refuses non-loopback connections, fast."""
from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from course_lib import netguard

PUBLIC_URLS = ["http://93.184.215.14/", "https://pypi.org/simple/", "http://[2606:4700::1111]/"]


@pytest.fixture
def blocked():
    """The guard in force for one test, whatever the state before (conftest sets COURSE_OFFLINE=1)."""
    was = netguard.network_blocked()
    netguard.block_network()
    yield
    if not was:
        netguard.unblock_network()


def test_importing_course_lib_offline_blocks_the_network():
    code = (
        "import socket, course_lib, course_lib.netguard as g\n"
        "assert g.network_blocked()\n"
        "try:\n"
        "    socket.create_connection(('198.51.100.7', 80), timeout=30)\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    env = dict(os.environ, COURSE_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("network access is blocked in the quick profile: ")
    assert "198.51.100.7:80" in out.stdout


def test_importing_course_lib_online_leaves_sockets_alone():
    code = "import course_lib, course_lib.netguard as g, socket; assert not g.network_blocked(); print(socket.create_connection.__module__)"
    env = {k: v for k, v in os.environ.items() if k != "COURSE_OFFLINE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "socket"


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_urllib_to_public_address_fails_fast(blocked, url):
    # the guard's own error (no network error could carry this message): refused before any connection
    with pytest.raises(RuntimeError, match=r"^network access is blocked in the quick profile: "):
        urllib.request.urlopen(url, timeout=30)


@pytest.mark.parametrize("address", [("8.8.8.8", 53), ("10.0.0.1", 80), ("192.168.1.1", 443), ("pypi.org", 443), ("0.0.0.0", 80)])
def test_raw_socket_connect_is_refused(blocked, address):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(RuntimeError, match="network access is blocked"):
            sock.connect(address)
        with pytest.raises(RuntimeError, match="network access is blocked"):
            sock.connect_ex(address)
    with pytest.raises(RuntimeError, match="network access is blocked"):
        socket.create_connection(address, timeout=5)


def test_ipv6_public_is_refused(blocked):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        with pytest.raises(RuntimeError, match="network access is blocked"):
            sock.connect(("2001:4860:4860::8888", 53, 0, 0))


@pytest.fixture
def local_http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"hello from loopback"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_still_works(blocked, local_http_server, host):
    with urllib.request.urlopen(f"http://{host}:{local_http_server}/", timeout=10) as response:
        assert response.read() == b"hello from loopback"
    with socket.create_connection(("127.0.0.1", local_http_server), timeout=10):
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", local_http_server)) == 0


def test_ipv6_loopback_allowed(blocked):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    with server:
        server.listen(1)
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as client:
            client.connect(server.getsockname()[:2])


def test_unix_sockets_allowed(blocked, tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
    left, right = socket.socketpair()
    left.close()
    right.close()


@pytest.mark.parametrize(
    "host, expected",
    [
        ("127.0.0.1", True), ("127.255.0.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
        ("LOCALHOST.", True), ("::ffff:127.0.0.1", True), (b"127.0.0.1", True),
        ("128.0.0.1", False), ("8.8.8.8", False), ("example.com", False), ("", False), ("::", False), (None, False),
    ],
)
def test_is_loopback_address(host, expected):
    assert netguard.is_loopback_address(host) is expected


def test_block_and_unblock_are_idempotent():
    was = netguard.network_blocked()
    original_connect = netguard._originals.get("connect", socket.socket.connect)
    try:
        netguard.block_network()
        netguard.block_network()
        assert netguard.network_blocked()
        netguard.unblock_network()
        netguard.unblock_network()
        assert not netguard.network_blocked()
        assert socket.socket.connect is original_connect
    finally:
        if was:
            netguard.block_network()
