"""Fixtures for the end-to-end tests in a real Docker engine.

The engine is started when it is not running (scripts/dockerd.sh), the
gatekeeper image is built with scripts/image.sh (offline base image when no
registry answers), and a scratch image of the project's whoami backend
stands in for traefik/whoami. Everything a test creates carries the label
gk-e2e=1 and is removed afterwards; containers only talk to each other on
networks the test made."""

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE = os.environ.get("GATEKEEPER_IMAGE", "gatekeeper:e2e")
WHOAMI_IMAGE = "gatekeeper-whoami:e2e"
CLIENT_IMAGE = "debian:12"  # bash's /dev/tcp is the client; built offline if need be
LABEL = "gk-e2e=1"


def docker(*args, check=True, timeout=300, input=None):
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                       input=input)
    if check and p.returncode != 0:
        raise AssertionError("docker %s failed (%d):\n%s%s" % (" ".join(args), p.returncode,
                                                              p.stdout, p.stderr))
    return p


@pytest.fixture(scope="session")
def engine():
    subprocess.run([os.path.join(REPO, "scripts", "dockerd.sh")], check=True, timeout=120)
    yield
    # Anything a failed test left behind.
    for kind in ("container", "network"):
        ids = docker(kind, "ls", "-aq" if kind == "container" else "-q", "--filter",
                     "label=" + LABEL, check=False).stdout.split()
        if ids:
            docker(kind, "rm", *(["-f"] if kind == "container" else []), *ids, check=False)


@pytest.fixture(scope="session")
def image(engine):
    subprocess.run([os.path.join(REPO, "scripts", "image.sh"), IMAGE], check=True, timeout=1200)
    return IMAGE


@pytest.fixture(scope="session")
def whoami_image(engine):
    static = os.path.join(REPO, "build", "whoami-static")
    assert os.access(static, os.X_OK), "run make static first (make test-docker does)"
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(static, os.path.join(d, "whoami"))
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write("FROM scratch\nCOPY whoami /whoami\nUSER 65532:65532\n"
                    'ENTRYPOINT ["/whoami", "-l", "0.0.0.0:8080"]\n')
        docker("build", "-q", "-t", WHOAMI_IMAGE, d)
    return WHOAMI_IMAGE


class Topology:
    """Networks and containers of one test, removed at the end."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:8]
        self.networks, self.containers = [], []

    def network(self, name, internal=False):
        full = "gke2e-%s-%s" % (self.tag, name)
        docker("network", "create", "--label", LABEL, *(["--internal"] if internal else []), full)
        self.networks.append(full)
        return full

    def run(self, name, image, *args, networks=(), aliases=(), opts=()):
        """Start a detached container on networks[0], then connect the others."""
        full = "gke2e-%s-%s" % (self.tag, name)
        net_args = []
        if networks:
            net_args = ["--network", networks[0]]
            for a in aliases:
                net_args += ["--network-alias", a]
        docker("run", "-d", "--name", full, "--label", LABEL, *net_args, *opts, image, *args)
        self.containers.append(full)
        for n in networks[1:]:
            docker("network", "connect", *sum((["--alias", a] for a in aliases), []), n, full)
        return full

    def remove(self, name):
        docker("rm", "-f", name, check=False)
        if name in self.containers:
            self.containers.remove(name)

    def close(self):
        for c in reversed(self.containers):
            docker("rm", "-f", c, check=False)
        for n in reversed(self.networks):
            docker("network", "rm", n, check=False)


@pytest.fixture
def topo(engine):
    t = Topology()
    yield t
    t.close()


def client_get(network, host, port, path="/", timeout=10):
    """An HTTP/1.0 GET from a throwaway container on network (bash /dev/tcp)."""
    script = ('exec 3<>/dev/tcp/%s/%d || exit 7; printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n" >&3; '
              'timeout %d cat <&3' % (host, port, path, host, timeout))
    return docker("run", "--rm", "--label", LABEL, "--network", network, CLIENT_IMAGE,
                  "timeout", str(timeout + 5), "bash", "-c", script, check=False, timeout=60)


def wait_until(fn, timeout=60, every=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError("%s not reached in %ss (last: %r)" % (what, timeout, last))
