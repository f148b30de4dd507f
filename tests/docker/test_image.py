"""The image, and the inbound scenario end to end: a client on the `web`
network reaches whoami on an `internal: true` network only through
gatekeeper, which follows a restarted whoami and drains on `docker stop`."""

import json

from conftest import docker, http_get, jailed_audit, wait_until


def inspect(name):
    return json.loads(docker("inspect", name).stdout)[0]


def test_image_is_small_non_root_and_self_checking(image):
    info = inspect(image)
    cfg = info["Config"]
    assert info["Size"] <= 8 * 1000 * 1000, info["Size"]
    assert cfg["User"] == "65532:65532"
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/gatekeeper", "health"]
    assert cfg["StopSignal"] == "SIGTERM"
    assert "8080/tcp" in cfg["ExposedPorts"]
    # the default config it ships is valid
    r = docker("run", "--rm", image, "-t", "-c", "/etc/gatekeeper/gatekeeper.yaml", check=False)
    assert r.returncode == 0, r.stderr


HARDENED = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def test_inbound_gateway_restart_and_stop(image, whoami_image, topo):
    web = topo.network("web")
    internal = topo.network("internal", internal=True)
    topo.run("whoami", whoami_image, "-n", "whoami-1", networks=[internal], aliases=["whoami"])
    gk = topo.run("gatekeeper", image, "--listen", "0.0.0.0:8080", "--upstream", "whoami:8080",
                  "--refresh", "2s", "--admin", "127.0.0.1:9090",
                  networks=[web, internal], aliases=["gatekeeper"], opts=HARDENED)

    got = wait_until(lambda: http_get(web, "gatekeeper", 8080), what="first answer")
    assert "Name: whoami-1" in got and "RemoteAddr:" in got
    # healthy by the image's own HEALTHCHECK (`gatekeeper health`, no shell)
    wait_until(lambda: inspect(gk)["State"]["Health"]["Status"] == "healthy", timeout=60,
               what="healthy")

    # the client cannot reach whoami itself: it is on the internal network only
    assert http_get(web, "whoami", 8080, timeout=3) is None

    # whoami restarts with a new address: followed without restarting gatekeeper
    old_ip = inspect(topo.containers[0])["NetworkSettings"]["Networks"][internal]["IPAddress"]
    topo.remove(topo.containers[0])
    topo.run("blocker", whoami_image, "-n", "blocker", networks=[internal])  # takes the old address
    topo.run("whoami2", whoami_image, "-n", "whoami-2", networks=[internal], aliases=["whoami"])
    new_ip = inspect(topo.containers[-1])["NetworkSettings"]["Networks"][internal]["IPAddress"]
    assert new_ip != old_ip
    wait_until(lambda: "Name: whoami-2" in (http_get(web, "gatekeeper", 8080) or ""),
               timeout=60, what="the restarted whoami")

    # docker stop: drains within the grace period, exits 0
    docker("stop", "-t", "10", gk, timeout=60)
    state = inspect(gk)["State"]
    assert state["ExitCode"] == 0, state
    logs = docker("logs", gk).stderr
    assert "msg=draining" in logs and "msg=exit status=0" in logs, logs[-2000:]


def test_jailed_worker_reaches_only_its_network(image, whoami_image, topo):
    """`gatekeeper audit` in a container beside whoami on the internal
    network: whoami and the gatekeeper are reachable, a container on the web
    network is not (by name or by address), and its name does not resolve.
    The same audit run from the web network fails, so it can tell."""
    web = topo.network("web")
    internal = topo.network("internal", internal=True)
    topo.run("whoami", whoami_image, networks=[internal], aliases=["whoami"])
    outside = topo.run("outside", whoami_image, networks=[web], aliases=["outside"])
    outside_ip = inspect(outside)["NetworkSettings"]["Networks"][web]["IPAddress"]
    topo.run("gatekeeper", image, "--listen", "0.0.0.0:8080", "--upstream", "whoami:8080",
             networks=[web, internal], aliases=["gatekeeper"])
    checks = ["--expect-open", "whoami:8080", "--expect-open", "gatekeeper:8080",
              "--expect-closed", "%s:8080" % outside_ip, "--expect-closed", "outside:8080",
              "--expect-no-dns", "outside"]
    jailed = jailed_audit(image, internal, *checks)
    assert jailed.returncode == 0, jailed.stdout + jailed.stderr
    assert "5 checks, 5 as expected, 0 not" in jailed.stdout
    free = jailed_audit(image, web, *checks)
    assert free.returncode == 1, free.stdout
