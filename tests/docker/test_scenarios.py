"""The compose scenarios of docker/, run with docker-compose as they are,
with local stand-ins only for the public images that cannot be pulled here
(traefik: a client container on the same network; traefik/whoami: the
project's whoami). The topology and gatekeeper configs are the files'."""

import os
import tempfile
import uuid

from conftest import CLIENT_IMAGE, IMAGE, LABEL, REPO, WHOAMI_IMAGE, docker, wait_until

import subprocess


def compose(project, files, *args, check=True, timeout=300):
    cmd = ["docker-compose", "-p", project]
    for f in files:
        cmd += ["-f", f]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s failed:\n%s%s" % (" ".join(cmd + list(args)), p.stdout, p.stderr))
    return p


STANDINS = """version: "3.8"
services:
  gatekeeper:
    image: %(gk)s
  whoami:
    image: %(whoami)s
    user: "0:0"
    entrypoint: ["/whoami", "-l", "0.0.0.0:80", "-n", "whoami"]
  worker:
    image: %(gk)s
"""


def test_inbound_scenario(image, whoami_image):
    scenario = os.path.join(REPO, "docker", "inbound", "docker-compose.yml")
    project = "gke2e%s" % uuid.uuid4().hex[:6]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write(STANDINS % {"gk": image, "whoami": whoami_image})
        override = f.name
    files = [scenario, override]
    try:
        # Traefik itself is the one service not started: a client container
        # on its network plays its part.
        compose(project, files, "up", "-d", "gatekeeper", "whoami", "worker")
        worker = compose(project, files, "ps", "-q", "worker").stdout.strip()
        code = docker("wait", worker, timeout=120).stdout.strip()
        logs = docker("logs", worker).stdout
        assert code == "0", logs
        assert "3 checks, 3 as expected, 0 not" in logs, logs

        gk = compose(project, files, "ps", "-q", "gatekeeper").stdout.strip()
        script = ('exec 3<>/dev/tcp/gatekeeper/8080 || exit 7; '
                  'printf "GET /hello HTTP/1.1\\r\\nHost: whoami.localhost\\r\\n'
                  'X-Forwarded-For: 198.51.100.7\\r\\nConnection: close\\r\\n\\r\\n" >&3; '
                  'timeout 10 cat <&3')

        def ask():
            r = docker("run", "--rm", "--label", LABEL, "--network", "inbound_web", CLIENT_IMAGE,
                       "bash", "-c", script, check=False, timeout=60)
            return r.stdout if "200 OK" in r.stdout else None

        body = wait_until(ask, timeout=60, what="an answer through the scenario")
        assert "Name: whoami" in body
        # Traefik's X-Forwarded-For kept (trusted network), the sender appended
        assert "X-Forwarded-For: 198.51.100.7, " in body, body
        assert "GET /hello HTTP/1.1" in body
        health = wait_until(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", gk)
                            .stdout.strip() == "healthy", timeout=60, what="healthy")
        assert health
    finally:
        compose(project, files, "down", "-v", "--remove-orphans", check=False)
        os.unlink(override)
