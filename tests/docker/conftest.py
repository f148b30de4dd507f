"""Fixtures for the end-to-end tests in a real Docker engine.

The engine is started when it is not running (scripts/dockerd.sh), the
gatekeeper image is built with scripts/image.sh (offline base image when no
registry answers), and a scratch image of the project's whoami backend
stands in for traefik/whoami. Everything a test creates carries the label
gk-e2e=1 and is removed afterwards; containers only talk to each other on
networks the test made."""

import json
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
TOOLS_IMAGE = "gatekeeper-tools:e2e"  # debian:12 + dnsmasq, openssl, curl: the stand-in internet
LABEL = "gk-e2e=1"
PROJECT_PREFIX = "gke2e"  # compose projects and swarm stacks of these tests


def docker(*args, check=True, timeout=300, input=None, env=None):
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                       input=input, env=env)
    if check and p.returncode != 0:
        raise AssertionError("docker %s failed (%d):\n%s%s" % (" ".join(args), p.returncode,
                                                              p.stdout, p.stderr))
    return p


@pytest.fixture(scope="session")
def engine():
    """A running Docker engine, started when need be. When none can be had,
    every test here is skipped with the reason (`make test` on a machine
    without Docker), or fails when GK_DOCKER_REQUIRED=1 (`make test-docker`)."""
    try:
        p = subprocess.run([os.path.join(REPO, "scripts", "dockerd.sh")], capture_output=True,
                           text=True, timeout=120)
        why = None if p.returncode == 0 else (p.stdout + p.stderr)[-3000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    if why is not None:
        msg = "no Docker engine could be started: " + why
        if os.environ.get("GK_DOCKER_REQUIRED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    remove_leftovers()
    yield
    remove_leftovers()


def remove_leftovers():
    """Containers and networks a failed or killed run left behind: those
    labelled by these tests and those of their compose projects."""
    for kind in ("container", "network"):
        ls = [kind, "ls", "-q"] + (["-a"] if kind == "container" else [])
        ids = set(docker(*ls, "--filter", "label=" + LABEL, check=False).stdout.split())
        ids |= set(docker(*ls, "--filter", "name=" + PROJECT_PREFIX, check=False).stdout.split())
        if ids:
            docker(kind, "rm", *(["-f"] if kind == "container" else []), *sorted(ids),
                   check=False)


@pytest.fixture(scope="session")
def image(engine):
    p = subprocess.run([os.path.join(REPO, "scripts", "image.sh"), IMAGE], capture_output=True,
                       text=True, timeout=1200)
    assert p.returncode == 0, "scripts/image.sh failed:\n" + (p.stdout + p.stderr)[-6000:]
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


@pytest.fixture(scope="session")
def tools_image(engine):
    """The stand-in internet's hosts: a DNS server (dnsmasq), TLS servers
    (openssl s_server) and a client (curl), from the offline debian:12."""
    subprocess.run([os.path.join(REPO, "scripts", "base-image.sh"), "debian:12", "bookworm"],
                   check=True, timeout=1200)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write("FROM debian:12\n"
                    "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                    "--no-install-recommends dnsmasq-base openssl curl "
                    "&& rm -rf /var/lib/apt/lists/*\n")
        docker("build", "-q", "-t", TOOLS_IMAGE, d, timeout=900)
    return TOOLS_IMAGE


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


def http_script(host, port, path="/", headers="", timeout=10):
    """bash's /dev/tcp sending one HTTP/1.1 request and printing the answer."""
    return ('exec 3<>/dev/tcp/%s/%d || exit 7; printf "GET %s HTTP/1.1\\r\\nHost: %s\\r\\n'
            '%sConnection: close\\r\\n\\r\\n" >&3; timeout %d cat <&3'
            % (host, port, path, host, headers, timeout))


def http_get(network, host, port, path="/", headers="", timeout=10):
    """One HTTP/1.1 request from a throwaway container on network (bash's
    /dev/tcp); the response text, or None when no 200 came back."""
    r = docker("run", "--rm", "--label", LABEL, "--network", network, CLIENT_IMAGE,
               "timeout", str(timeout + 5), "bash", "-c",
               http_script(host, port, path, headers, timeout), check=False, timeout=60)
    return r.stdout if " 200 OK" in r.stdout else None


def http_exec(container, host, port, path="/", headers="", timeout=10):
    """The same request from a running container that has bash (one made
    from CLIENT_IMAGE): the whole response text, "" when none came."""
    r = docker("exec", container, "timeout", str(timeout + 5), "bash", "-c",
               http_script(host, port, path, headers, timeout), check=False, timeout=60)
    return r.stdout


def admin_get(container, path, port=9090):
    """GET path from the admin endpoint a container serves on its own
    127.0.0.1 (gatekeeper's image has no shell): a throwaway container that
    shares its network namespace asks. The whole response text."""
    r = docker("run", "--rm", "--label", LABEL, "--network", "container:" + container,
               CLIENT_IMAGE, "timeout", "15", "bash", "-c",
               http_script("127.0.0.1", port, path), check=False, timeout=60)
    return r.stdout


def address(container, network):
    """The container's IPv4 address on network ("" when not attached)."""
    info = json.loads(docker("inspect", container).stdout)[0]
    net = info["NetworkSettings"]["Networks"].get(network)
    return net["IPAddress"] if net else ""


def wait_until(fn, timeout=60, every=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError("%s not reached in %ss (last: %r)" % (what, timeout, last))


def compose(project, files, *args, check=True, timeout=300, env=None):
    cmd = ["docker-compose", "-p", project]
    for f in files:
        cmd += ["-f", f]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    if check and p.returncode != 0:
        raise AssertionError("%s failed:\n%s%s" % (" ".join(cmd + list(args)), p.stdout, p.stderr))
    return p


class Scenario:
    """One compose file of docker/, run as it is plus an override that swaps
    in local images (and, for egress, the stand-in internet). The override
    is JSON, which compose reads as YAML."""

    def __init__(self, scenario, override, env=None, project=None):
        self.file = os.path.join(REPO, "docker", scenario, "docker-compose.yml")
        self.project = project or "%s%s" % (PROJECT_PREFIX, uuid.uuid4().hex[:6])
        self.env = dict(env or {})
        fd, self.override = tempfile.mkstemp(suffix=".json", prefix="gk-override-")
        with os.fdopen(fd, "w") as f:
            json.dump(override, f, indent=1)

    def compose(self, *args, **kw):
        return compose(self.project, [self.file, self.override], *args, env=self.env, **kw)

    def up(self, *services):
        self.compose("up", "-d", *services, timeout=600)

    def container(self, service):
        cid = self.compose("ps", "-q", service).stdout.strip()
        assert cid, "no container for %s" % service
        return cid

    def exec(self, service, *cmd, timeout=60):
        return docker("exec", self.container(service), *cmd, check=False, timeout=timeout)

    def logs(self, service):
        p = docker("logs", self.container(service), check=False)
        return p.stdout + p.stderr

    def network(self, name):
        return "%s_%s" % (self.project, name)

    def down(self):
        self.compose("down", "-v", "--remove-orphans", "-t", "5", check=False)
        os.unlink(self.override)


def jailed_audit(image, network, *checks, timeout=120):
    """`gatekeeper audit` in a throwaway hardened container on network."""
    return docker("run", "--rm", "--label", LABEL, "--network", network, "--read-only",
                  "--cap-drop", "ALL", "--security-opt", "no-new-privileges", image, "audit",
                  "--timeout", "2s", *checks, check=False, timeout=timeout)


class Internet:
    """A stand-in internet for egress scenarios: the scenario's outside
    network is made `internal` (no packet can leave the machine) with its own
    public-looking subnet, a dnsmasq at .53 answers for the names the test
    gives (and NXDOMAIN for every other), and a TLS server per host serves
    /name.txt with its own name (its certificate says it too). Names can be
    re-pointed while it runs (point())."""

    def __init__(self, tools_image, network, hosts, subnet):
        """subnet: the first three octets of a public-looking /24, only ever
        an internal bridge here; one per scenario that may run at once."""
        self.tools, self.network, self.hosts = tools_image, network, dict(hosts)
        self.subnet = subnet
        self.records = {}

    def ip(self, octet):
        return "%s.%d" % (self.subnet, octet)

    def hosts_file(self):
        return "".join("%s %s\n" % (ip, name) for name, ip in sorted(self.records.items()))

    def services(self, records):
        """records: name -> address. hosts: service -> (octet, name it serves)."""
        self.records = dict(records)
        svc = {"dns": {
            "image": self.tools,
            "command": ["sh", "-c", 'printf "%s" "$$HOSTS" > /tmp/hosts && exec dnsmasq -k '
                        "--no-resolv --no-hosts --addn-hosts=/tmp/hosts --address=/#/ "
                        "--log-queries --log-facility=- --user=root"],
            "environment": {"HOSTS": self.hosts_file()},
            "networks": {self.network: {"ipv4_address": self.ip(53)}},
        }}
        for service, (octet, name) in self.hosts.items():
            svc[service] = {
                "image": self.tools,
                "command": ["sh", "-c",
                            'cd /tmp && echo "%s" > name.txt && openssl req -x509 -newkey '
                            'rsa:2048 -nodes -subj "/CN=%s" -keyout k.pem -out c.pem -days 2 '
                            '2>/dev/null && exec openssl s_server -accept 443 -cert c.pem '
                            "-key k.pem -WWW" % (name, name)],
                "networks": {self.network: {"ipv4_address": self.ip(octet)}},
            }
        return svc

    def network_override(self):
        return {self.network: {"internal": True,
                               "ipam": {"config": [{"subnet": self.subnet + ".0/24"}]}}}

    def nameserver(self):
        return self.ip(53)

    def point(self, scenario, name, ip):
        """Re-point name at ip (dnsmasq re-reads its hosts file on SIGHUP)."""
        self.records[name] = ip
        r = scenario.exec("dns", "sh", "-c", 'printf "%%s" "%s" > /tmp/hosts && kill -HUP 1'
                          % self.hosts_file())
        assert r.returncode == 0, r.stderr


def curl(scenario, service, url, *args, timeout=10):
    """curl from a scenario's service: (exit code, body, verbose stderr)."""
    r = scenario.exec(service, "curl", "-sSkv", "--max-time", str(timeout), *args, url,
                      timeout=timeout + 30)
    return r.returncode, r.stdout, r.stderr
