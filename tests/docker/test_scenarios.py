"""The inbound scenarios of docker/ (inbound, multi-project, swarm), run as
they are, with local stand-ins only for the public images that cannot be
pulled here (traefik: a client container as its service, or on its
network; traefik/whoami: the project's whoami). The topology and gatekeeper
configs are the files'."""

import uuid

from conftest import (CLIENT_IMAGE, PROJECT_PREFIX, Scenario, address, admin_get, docker,
                      http_exec, http_get, jailed_audit, wait_until)


def whoami_standin(image, name, port=80):
    """traefik/whoami's part, played by the project's whoami on `port`."""
    return {"image": image, "user": "0:0",
            "entrypoint": ["/whoami", "-l", "0.0.0.0:%d" % port, "-n", name]}


def test_inbound_scenario(image, whoami_image, topo):
    web = "inbound_web"
    s = Scenario("inbound", {"version": "3.8", "services": {
        "gatekeeper": {"image": image},
        "whoami": whoami_standin(whoami_image, "whoami"),
        "worker": {"image": image},
        # Traefik's part: a client container as the `traefik` service, the
        # name gatekeeper's `sources` gives (it sends the requests itself).
        "traefik": {"image": CLIENT_IMAGE, "entrypoint": ["sleep"], "command": ["infinity"]},
    }, "networks": {
        # No lookup of a missing name (traefik while it is down) and no
        # packet leaves the machine: the test needs no way out (and nothing
        # is published on the host's port 80). An override replaces the
        # whole entry, hence the name again.
        "web": {"name": web, "internal": True},
    }})
    try:
        # Traefik last: until its name resolves nobody passes, and /readyz says why.
        s.up("gatekeeper", "whoami", "worker")
        code = docker("wait", s.container("worker"), timeout=120).stdout.strip()
        logs = s.logs("worker")
        assert code == "0", logs
        assert "3 checks, 3 as expected, 0 not" in logs, logs
        # whoami cannot forge a neighbour's address (no raw sockets)
        assert "NET_RAW" in docker("inspect", "-f", "{{.HostConfig.CapDrop}}",
                                   s.container("whoami")).stdout
        gk = s.container("gatekeeper")
        ready = wait_until(lambda: admin_get(gk, "/readyz"), what="an answer from /readyz")
        assert " 503 " in ready.split("\n")[0], ready
        assert "listener inbound: source traefik has no address yet" in ready, ready

        s.up("traefik")
        traefik = s.container("traefik")
        body = wait_until(lambda: ok(http_exec(traefik, "gatekeeper", 8080, "/hello",
                                               "X-Forwarded-For: 198.51.100.7\\r\\n")),
                          timeout=60, what="an answer through the scenario")
        assert "Name: whoami" in body
        # Traefik's X-Forwarded-For kept (trusted network), the sender appended
        assert "X-Forwarded-For: 198.51.100.7, %s" % address(traefik, web) in body, body
        assert "GET /hello HTTP/1.1" in body
        wait_until(lambda: " 200 " in admin_get(gk, "/readyz").split("\n")[0], timeout=30,
                   what="/readyz 200 once traefik resolved")
        wait_until(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", gk)
                   .stdout.strip() == "healthy", timeout=60, what="healthy")

        # Any other container on `web` is refused, by a 403 that says why,
        # and the refusal is logged with its address.
        other = topo.run("not-traefik", CLIENT_IMAGE, "sleep", "infinity", networks=[web])
        refused(http_exec(other, "gatekeeper", 8080, "/hello"))
        assert refusal_logged(s, address(other, web))
        assert "Name: whoami" not in http_exec(other, "gatekeeper", 8080, "/hello")

        # Traefik restarts with a new address (a container now holds the old
        # one, unless Docker gave it another): followed after a refresh.
        old = address(traefik, web)
        s.compose("stop", "-t", "1", "traefik")
        holder = topo.run("old-address", CLIENT_IMAGE, "sleep", "infinity", networks=[web])
        s.compose("start", "traefik")
        new = address(traefik, web)
        assert new and new != old, (old, new)
        body = wait_until(lambda: ok(http_exec(traefik, "gatekeeper", 8080, "/again")),
                          timeout=90, what="the restarted traefik (%s) let through" % new)
        assert "GET /again HTTP/1.1" in body and "X-Forwarded-For: %s" % new in body, body
        # Its old address is not trusted any more.
        if address(holder, web) == old:
            refused(http_exec(holder, "gatekeeper", 8080, "/hello"))
            assert refusal_logged(s, old)
        refused(http_exec(other, "gatekeeper", 8080, "/hello"))
    finally:
        # before `down`: compose removes `web`, which must have no one left on it
        for c in list(topo.containers):
            topo.remove(c)
        s.down()


def ok(response):
    """The response text when it is a 200, else None (for wait_until)."""
    return response if " 200 OK" in response.split("\n")[0] else None


def refused(response):
    """gatekeeper's refusal of a source it does not know (mode http)."""
    head = response.split("\r\n\r\n")[0]
    assert head.startswith("HTTP/1.1 403"), response
    assert "X-Gatekeeper-Reason: source_denied" in head, response
    assert "Name: whoami" not in response, response


def refusal_logged(s, client):
    """The access-log line of a source_denied refusal of client."""
    return wait_until(lambda: [line for line in s.logs("gatekeeper").splitlines()
                               if "msg=access" in line and "reason=source_denied" in line
                               and "decision=deny" in line and "client=%s:" % client in line],
                      timeout=10, what="source_denied for %s logged" % client)


def test_multi_project_isolation(image, whoami_image):
    """Two projects from docker/multi-project/project, beside the proxy's
    `web` network: each gatekeeper serves its own app, and no project (nor
    the proxy's network) reaches another's app or database."""
    tag = uuid.uuid4().hex[:6]
    web = "%s%s_web" % (PROJECT_PREFIX, tag)
    # The proxy's file creates `web`; its Traefik is not started (a client
    # container on `web` plays it), so it gets a local image, never pulled.
    proxy = Scenario("multi-project/proxy", {"version": "3.8", "services": {
        "traefik": {"image": image}}}, env={"WEB_NETWORK": web},
        project="%s%sproxy" % (PROJECT_PREFIX, tag))
    projects = {}
    try:
        proxy.compose("up", "--no-start")
        for name in ("alpha", "beta"):
            project = "%s%s%s" % (PROJECT_PREFIX, tag, name)
            s = Scenario("multi-project/project", {"version": "3.8", "services": {
                "gatekeeper": {"image": image},
                "app": whoami_standin(whoami_image, "%s-app" % name),
                "db": whoami_standin(whoami_image, "%s-db" % name, port=5432),
            }}, env={"WEB_NETWORK": web, "PROJECT": project}, project=project)
            projects[name] = s
            s.up()

        where = {}
        for name, s in projects.items():
            body = wait_until(lambda: http_get(web, "%s-gatekeeper" % s.project, 8080),
                              timeout=60, what="%s's app through its gatekeeper" % name)
            assert "Name: %s-app" % name in body, body
            internal = s.network("internal")
            where[name] = {"internal": internal,
                           "app": address(s.container("app"), internal),
                           "db": address(s.container("db"), internal),
                           "gk_web": address(s.container("gatekeeper"), web),
                           "gk_internal": address(s.container("gatekeeper"), internal)}

        # The proxy's side: each project only through its gatekeeper.
        checks = []
        for name, w in where.items():
            checks += ["--expect-open", "%s-gatekeeper:8080" % projects[name].project,
                       "--expect-closed", "%s:80" % w["app"],
                       "--expect-closed", "%s:5432" % w["db"]]
        audit = jailed_audit(image, web, *checks, "--expect-no-dns", "db")
        assert audit.returncode == 0, audit.stdout + audit.stderr

        # Each project's side: its own db and app, nothing of the other's,
        # and nothing on `web` either (not even the other gatekeeper).
        for name, other in (("alpha", "beta"), ("beta", "alpha")):
            w, o = where[name], where[other]
            audit = jailed_audit(image, w["internal"],
                                 "--expect-open", "db:5432", "--expect-open", "app:80",
                                 "--expect-closed", "%s:5432" % o["db"],
                                 "--expect-closed", "%s:80" % o["app"],
                                 "--expect-closed", "%s:8080" % o["gk_internal"],
                                 "--expect-closed", "%s:8080" % o["gk_web"],
                                 "--expect-no-dns", "%s-gatekeeper" % projects[other].project)
            assert audit.returncode == 0, "%s:\n%s%s" % (name, audit.stdout, audit.stderr)
            assert "7 checks, 7 as expected, 0 not" in audit.stdout, audit.stdout
    finally:
        for s in projects.values():
            s.down()
        proxy.down()
