"""pytest fixtures for the gatekeeper integration tests.

Factories, each cleaned up at teardown:
  gk(config_text, **kw)       -> Gatekeeper  (start_gatekeeper in the test's tmp_path)
  quick(args, **kw)           -> Gatekeeper  (start_quick, no -c)
  echo(host="127.0.0.1")      -> EchoServer
  sink(host=...)              -> SinkServer
  source(size, host=...)      -> SourceServer
  whoami(host=..., name=...)  -> WhoamiServer
  blackhole(host=...)         -> BlackholeServer
  ipv6_available              -> skips the test when ::1 is not usable
A gatekeeper whose log shows a sanitizer report fails the test at teardown.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gkharness  # noqa: E402
from dnsserver import DnsServer  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "ipv6: needs a usable ::1")


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not os.access(gkharness.GK_BIN, os.X_OK):
        pytest.fail("gatekeeper binary not found at %s (run make, or set GATEKEEPER_BIN)" % gkharness.GK_BIN)


def _factory(make):
    made = []

    def create(*a, **kw):
        obj = make(*a, **kw)
        made.append(obj)
        return obj

    return create, made


@pytest.fixture
def gk(tmp_path):
    created, made = _factory(lambda text, **kw: gkharness.start_gatekeeper(text, tmp_path, **kw))
    yield created
    errors = []
    for g in reversed(made):
        g.stop()
        try:
            g.check_sanitizers()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def quick():
    created, made = _factory(lambda args, **kw: gkharness.start_quick(args, **kw))
    yield created
    errors = []
    for g in reversed(made):
        g.stop()
        try:
            g.check_sanitizers()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


def _server_fixture(cls):
    @pytest.fixture
    def fixture():
        created, made = _factory(cls)
        yield created
        for s in reversed(made):
            s.close()

    return fixture


echo = _server_fixture(gkharness.EchoServer)
sink = _server_fixture(gkharness.SinkServer)
source = _server_fixture(gkharness.SourceServer)
blackhole = _server_fixture(gkharness.BlackholeServer)
handler_server = _server_fixture(gkharness.HandlerServer)


@pytest.fixture
def dns():
    """A running dnsmasq on a high port; answers carry TTL 1 (dnsserver.py)."""
    d = DnsServer(ttl=1)
    yield d
    d.close()


@pytest.fixture
def whoami():
    if not os.access(gkharness.WHOAMI_BIN, os.X_OK):
        pytest.fail("whoami backend not found at %s (run make, or set WHOAMI_BIN)" % gkharness.WHOAMI_BIN)
    created, made = _factory(gkharness.WhoamiServer)
    yield created
    for s in reversed(made):
        s.close()


_IPV6 = None


@pytest.fixture
def ipv6_available():
    global _IPV6
    if _IPV6 is None:
        _IPV6 = gkharness.have_ipv6()
    if not _IPV6:
        pytest.skip("IPv6 loopback ::1 not available")
    return True
