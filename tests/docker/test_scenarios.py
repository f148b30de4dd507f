"""The inbound scenarios of docker/ (inbound, multi-project, swarm), run as
they are, with local stand-ins only for the public images that cannot be
pulled here (traefik: a client container on its network; traefik/whoami:
the project's whoami). The topology and gatekeeper configs are the files'."""

import json
import uuid

from conftest import PROJECT_PREFIX, Scenario, docker, http_get, jailed_audit, wait_until


def whoami_standin(image, name, port=80):
    """traefik/whoami's part, played by the project's whoami on `port`."""
    return {"image": image, "user": "0:0",
            "entrypoint": ["/whoami", "-l", "0.0.0.0:%d" % port, "-n", name]}


def test_inbound_scenario(image, whoami_image):
    s = Scenario("inbound", {"version": "3.8", "services": {
        "gatekeeper": {"image": image},
        "whoami": whoami_standin(whoami_image, "whoami"),
        "worker": {"image": image},
    }})
    try:
        # Traefik itself is the one service not started: a client container
        # on its network plays its part.
        s.up("gatekeeper", "whoami", "worker")
        code = docker("wait", s.container("worker"), timeout=120).stdout.strip()
        logs = s.logs("worker")
        assert code == "0", logs
        assert "3 checks, 3 as expected, 0 not" in logs, logs

        body = wait_until(lambda: http_get("inbound_web", "gatekeeper", 8080, "/hello",
                                           "X-Forwarded-For: 198.51.100.7\\r\\n"),
                          timeout=60, what="an answer through the scenario")
        assert "Name: whoami" in body
        # Traefik's X-Forwarded-For kept (trusted network), the sender appended
        assert "X-Forwarded-For: 198.51.100.7, " in body, body
        assert "GET /hello HTTP/1.1" in body
        gk = s.container("gatekeeper")
        wait_until(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", gk)
                   .stdout.strip() == "healthy", timeout=60, what="healthy")
    finally:
        s.down()


def address(container, network):
    info = json.loads(docker("inspect", container).stdout)[0]
    return info["NetworkSettings"]["Networks"][network]["IPAddress"]


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
