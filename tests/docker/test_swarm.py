"""docker/swarm: stack.yml deployed as it is on a one-node swarm (created
for the test, and left again, when this engine is not in one), with the
project's whoami standing in for traefik/whoami and a client container on
the web overlay for Traefik."""

import json
import os
import tempfile
import time
import uuid

import pytest

from conftest import PROJECT_PREFIX, REPO, docker, http_get, jailed_audit, wait_until

SWARM = os.path.join(REPO, "docker", "swarm")


@pytest.fixture
def swarm(engine):
    state = docker("info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip()
    created = state == "inactive"
    if created:
        p = docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=False, timeout=120)
        if p.returncode != 0:
            msg = "this engine cannot start a swarm: " + (p.stdout + p.stderr)[-2000:]
            if os.environ.get("GK_DOCKER_REQUIRED") == "1":
                pytest.fail(msg)
            pytest.skip(msg)
    yield
    if created:
        docker("swarm", "leave", "--force", check=False, timeout=120)


def stack_deploy(name, files, env):
    args = ["stack", "deploy", "--resolve-image", "never"]
    for f in files:
        args += ["-c", f]
    p = docker(*args, name, check=False, timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr


def running(service):
    """Replicas running / wanted, from `docker service ls`."""
    out = docker("service", "ls", "--filter", "name=" + service, "--format",
                 "{{.Name}} {{.Replicas}}").stdout.split()
    return dict(zip(out[::2], out[1::2])).get(service, "")


def test_swarm_stack(swarm, image, whoami_image):
    tag = uuid.uuid4().hex[:6]
    stack = "%s%s" % (PROJECT_PREFIX, tag)
    web = "%s%s_web" % (PROJECT_PREFIX, tag)
    env = dict(os.environ, WEB_NETWORK=web)
    # traefik.yml (which would own `web`) must at least be a valid stack.
    cfg = docker("stack", "config", "-c", os.path.join(SWARM, "traefik.yml"), env=env)
    assert "name: %s" % web in cfg.stdout, cfg.stdout
    override = {"version": "3.8", "services": {
        "gatekeeper": {"image": image},
        "whoami": {"image": whoami_image, "user": "0:0",
                   "entrypoint": ["/whoami", "-l", "0.0.0.0:80", "-n", "whoami"]},
    }}
    fd, path = tempfile.mkstemp(suffix=".json", prefix="gk-stack-")
    with os.fdopen(fd, "w") as f:
        json.dump(override, f)
    docker("network", "create", "-d", "overlay", "--attachable", "--label", "gk-e2e=1", web)
    try:
        stack_deploy(stack, [os.path.join(SWARM, "stack.yml"), path], env)
        for svc in ("gatekeeper", "whoami"):
            wait_until(lambda: running("%s_%s" % (stack, svc)) == "2/2", timeout=180,
                       what="%s_%s running" % (stack, svc))

        # The way in: the web overlay reaches whoami through gatekeeper.
        body = wait_until(lambda: http_get(web, "%s_gatekeeper" % stack, 8080, "/swarm",
                                           "X-Forwarded-For: 198.51.100.7\\r\\n"),
                          timeout=120, what="whoami through the stack's gatekeeper")
        assert "Name: whoami" in body and "GET /swarm HTTP/1.1" in body, body
        assert "X-Forwarded-For: 198.51.100.7, 10." in body, body

        # Isolation. From the internal overlay: whoami and gatekeeper, and
        # nothing on the web overlay (an address there has no route: the
        # internal overlay has no gateway). From the web overlay, whoami's
        # name does not resolve. Addresses are only probed from the internal
        # side: a non-internal container's default route leads off the
        # machine, and overlay subnets are not routed on the host.
        internal = "%s_internal" % stack
        outside = docker("run", "-d", "--label", "gk-e2e=1", "--network", web, whoami_image,
                         "-n", "outside").stdout.strip()
        outside_ip = wait_until(lambda: json.loads(docker("inspect", outside).stdout)[0][
            "NetworkSettings"]["Networks"][web]["IPAddress"], what="an address on the overlay")
        probe = ["--expect-open", "whoami:80", "--expect-open", "gatekeeper:8080",
                 "--expect-closed", "%s:8080" % outside_ip, "--expect-no-dns", "example.com"]
        audit = jailed_audit(image, internal, "--wait", "30s", *probe)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "4 checks, 4 as expected, 0 not" in audit.stdout, audit.stdout
        audit = jailed_audit(image, web, "--wait", "30s", "--expect-open", "%s:8080" % outside_ip,
                             "--expect-no-dns", "whoami", "--expect-no-dns", "tasks.whoami",
                             "--expect-no-dns", "%s_whoami" % stack)
        assert audit.returncode == 0, audit.stdout + audit.stderr

        # A rolling restart of whoami: new tasks, same service, still served.
        docker("service", "update", "--detach", "--force", "%s_whoami" % stack, timeout=300)
        time.sleep(2)
        wait_until(lambda: running("%s_whoami" % stack) == "2/2", timeout=180,
                   what="whoami restarted")
        assert wait_until(lambda: http_get(web, "%s_gatekeeper" % stack, 8080),
                          timeout=120, what="an answer after the restart")
    finally:
        docker("rm", "-f", *docker("ps", "-aq", "--filter", "label=gk-e2e=1").stdout.split(),
               check=False)
        docker("stack", "rm", stack, check=False)
        # the stack's networks go once its tasks are gone
        wait_until(lambda: not docker("network", "ls", "-q", "--filter",
                                      "name=%s_internal" % stack).stdout.strip(),
                   timeout=120, what="the stack removed")
        docker("network", "rm", web, check=False)
        os.unlink(path)
