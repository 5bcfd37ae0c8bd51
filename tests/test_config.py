"""The configuration through the real binary: uWSGI's config language in ini
files, the start-up report an operator reads, failing configurations that
list every problem at once, and docs/MIGRATING.md generated from the same
option table as `--help`.
"""

import re
import textwrap

import pytest

from conftest import BIN, ROOT, free_port, http_get
import helpers

BEGIN = "<!-- BEGIN uwsgi-rs --help-migrating"
END = "<!-- END uwsgi-rs --help-migrating -->"

APP = """def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [{body!r}]
"""


def run(args, cwd, env=None, timeout=10):
    import os
    full = dict(os.environ)
    full.pop("VIRTUAL_ENV", None)
    full.update(env or {})
    return helpers.run([BIN, *args], cwd=cwd, env=full, capture_output=True, text=True,
                       timeout=timeout)


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# ------------------------------------------------------------ docs/MIGRATING.md

def help_migrating():
    return helpers.run([BIN, "--help-migrating"], capture_output=True, text=True,
                       timeout=10, check=True).stdout


def test_migrating_doc_is_the_generated_table():
    """docs/MIGRATING.md holds exactly what `uwsgi-rs --help-migrating` prints:
    regenerate it with the command when the option table changes."""
    doc = (ROOT / "docs" / "MIGRATING.md").read_text()
    start = doc.index(BEGIN)
    body = doc[doc.index("\n", start) + 1:doc.index(END)]
    assert body == help_migrating()


def help_groups():
    """{group title: set of long names} from `uwsgi-rs --help`."""
    out = helpers.run([BIN, "--help"], capture_output=True, text=True, timeout=10,
                      check=True).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            cur = groups.setdefault(line[:-1], set())
        elif cur is not None and line.startswith("  "):
            spec = re.split(r"\s{2,}", line.strip())[0]
            cur.update(re.findall(r"--([a-z0-9-]+)", spec))
    return groups


def doc_groups():
    """{subsection: set of long names} from the generated tables."""
    groups, cur = {}, None
    for line in help_migrating().splitlines():
        if line.startswith("### "):
            cur = groups.setdefault(line[4:], set())
        elif cur is not None and line.startswith("| `-"):
            cur.update(re.findall(r"`--([a-z0-9-]+)`", line.split("|")[1]))
    return groups


def test_help_and_doc_agree():
    h, d = help_groups(), doc_groups()
    assert h["Options"] == d["Accepted, same meaning"] | d["uwsgi-rs only"]
    assert h["Config language (ini files and the command line)"] == d["Config language"]
    assert h["Different from uWSGI"] == d["Accepted, different meaning"]
    assert h["Accepted for uWSGI compatibility, without effect"] == d["Accepted without effect"]
    assert (h["Not honoured yet (the server starts and its start-up report names them)"]
            == d["Not honoured yet"])
    assert h["uWSGI options rejected by uwsgi-rs"] == d["Rejected"]
    names = [n for g in d.values() for n in g]
    assert len(names) == len(set(names)), "an option is in two tables"


def test_every_rejected_option_says_what_instead(tmp_path):
    rejected = sorted(doc_groups()["Rejected"])
    assert {"emperor", "gevent", "cache2", "spooler", "mule"} <= set(rejected)
    args = ["--http", f"127.0.0.1:{free_port()}"]
    for name in rejected:
        args += [f"--{name}=x"]
    r = run(args, tmp_path)
    assert r.returncode == 1, r
    lines = r.stderr.splitlines()
    # All of them in the one run: a count, then one line each.
    assert lines[0] == f"uwsgi-rs: the configuration has {len(rejected)} problem(s), nothing was started:"
    for name in rejected:
        line = next(l for l in lines if f"option --{name} is not supported by uwsgi-rs: " in l)
        assert len(line.split(": ", 1)[1]) > 10, line  # says what to do instead


# ------------------------------------------------------------ the language

def serve_ini(serve, tmp_path, ini_text, env=None, args=(), body=b"ok"):
    (tmp_path / "app.py").write_text(APP.format(body=body))
    port = free_port()
    ini = write(tmp_path / "app.ini", ini_text.replace("{port}", str(port)))
    srv = serve(["--ini", str(ini), *args], env=env)
    return srv, port


def test_placeholders_env_magic_and_blocks(serve, tmp_path):
    srv, port = serve_ini(serve, tmp_path, """
        [uwsgi]
        ini = :base
        base = %d
        http-socket = $(BIND_HOST):{port}
        if-env = APP_FILE
        wsgi-file = %(base)%(_)
        endif =
        if-not-env = APP_FILE
        wsgi-file = /definitely/not/here.py
        endif =
        processes = %(two)
        threads = %(two * 2) ; comment after a number
        vacuum = true ; comment after a switch
        for = A B
        env = FROM_FOR_%(_)=yes
        endfor =
        [base]
        two = 2
        """, env={"BIND_HOST": "127.0.0.1", "APP_FILE": "app.py"})
    srv.workers = 2
    srv.wait_ready()
    assert http_get(port, "/")[0] == 200
    assert "2 worker(s) x 4 thread(s)" in srv.log


def test_unknown_keys_warn_once_and_start(serve, tmp_path):
    srv, port = serve_ini(serve, tmp_path, """
        [uwsgi]
        http-socket = 127.0.0.1:{port}
        wsgi-file = app.py
        vaccum = true
        base = /srv/app
        """)
    assert http_get(port, "/")[0] == 200
    lines = [l for l in srv.log.splitlines() if "unknown keys" in l]
    assert len(lines) == 1, srv.log
    assert "vaccum (" in lines[0] and "did you mean vacuum?" in lines[0]
    assert "base (" in lines[0]


def test_strict_makes_them_errors_all_at_once(tmp_path):
    port = free_port()
    ini = write(tmp_path / "app.ini", f"""
        [uwsgi]
        strict = true
        http-socket = 127.0.0.1:{port}
        vaccum = true
        proceses = 4
        threads = many
        socket = $(NOT_SET_ANYWHERE)
        emperor = /etc/uwsgi
        """)
    r = run(["--ini", str(ini)], tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == "uwsgi-rs: the configuration has 5 problem(s), nothing was started:"
    text = r.stderr
    assert f"{ini}:6: invalid value 'many' for --threads" in text
    assert f"{ini}:7: environment variable NOT_SET_ANYWHERE is not set (used in --socket)" in text
    assert f"{ini}:8: option --emperor is not supported by uwsgi-rs" in text
    assert f"{ini}:4: unknown option 'vaccum' (did you mean --vacuum?) (--strict)" in text
    assert f"{ini}:5: unknown option 'proceses' (did you mean --processes?) (--strict)" in text


def test_unset_variable_never_becomes_a_socket_name(tmp_path):
    r = run(["--http-socket", "$(BIND)", "--wsgi-file", "app.py"], tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == ("uwsgi-rs: environment variable BIND is not set "
                                "(used in --http-socket)")
    assert not any(p.name.startswith("$") for p in tmp_path.iterdir())


def test_report_names_what_is_not_honoured(serve, tmp_path):
    srv, port = serve_ini(serve, tmp_path, """
        [uwsgi]
        http-socket = 127.0.0.1:{port}
        wsgi-file = app.py
        master = true
        vacuum = true
        https = 127.0.0.1:{port},app.crt,app.key
        touch-reload = /tmp/never-touched-a
        touch-reload = /tmp/never-touched-b
        reload-on-rss = 512
        print = hello from %n
        """)
    assert http_get(port, "/")[0] == 200
    log = srv.log
    assert "hello from app" in log
    assert "NOT HONOURED YET (the server runs without them): --https\n" in log
    assert ("different in uwsgi-rs: --touch-reload x2 (reloads the workers one at a time (as "
            "SIGHUP does here), not all at once); --reload-on-rss (") in log
    assert "accepted, no effect (uwsgi-rs --help says why): --master, --vacuum" in log
    assert log.index("start-up report") < log.index("serving http on")


def test_listen_above_somaxconn_is_reported(serve, tmp_path):
    """CAPEv2's `listen = 2056`: uWSGI refuses a backlog above
    net.core.somaxconn; uwsgi-rs starts (the kernel caps the queue) and its
    report says what to change."""
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    srv, port = serve_ini(serve, tmp_path, f"""
        [uwsgi]
        http-socket = 127.0.0.1:{{port}}
        wsgi-file = app.py
        listen = {somaxconn + 1}
        """)
    assert http_get(port, "/")[0] == 200
    assert (f"warning: --listen {somaxconn + 1} is above net.core.somaxconn ({somaxconn}): "
            f"the kernel caps each listen queue at {somaxconn} (uWSGI refuses to start): raise "
            f"it (sysctl -w net.core.somaxconn={somaxconn + 1}) or lower --listen") in srv.log


def test_uwsgi_variables_and_show_config(serve, tmp_path):
    """UWSGI_INI names the app's ini (tiangolo's images), UWSGI_PROCESSES is
    --processes; --show-config logs the expanded configuration."""
    (tmp_path / "app.py").write_text(APP.format(body=b"env"))
    port = free_port()
    ini = write(tmp_path / "inner.ini", f"""
        [uwsgi]
        http-socket = 127.0.0.1:{port}
        wsgi-file = app.py
        """)
    srv = serve(["--show-config"], env={"UWSGI_INI": str(ini), "UWSGI_PROCESSES": "2"},
                workers=2)
    assert http_get(port, "/")[2] == b"env"
    assert f"http-socket = 127.0.0.1:{port}" in srv.log
    assert "processes = 2" in srv.log


# The paste app of test_ini_paste_without_a_uwsgi_section, and a stand-in for
# PasteDeploy where it is not installed (its loadapp gives the same app).
PASTE_APP = """def make_app(global_conf, **local_conf):
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pasted"]
    return application
"""
PASTE_STUB = """def loadapp(uri, name=None, relative_to=None, global_conf=None):
    assert uri.startswith("config:/") and uri.endswith("/development.ini"), uri
    import pasteapp
    return pasteapp.make_app({})
"""


def test_ini_paste_without_a_uwsgi_section(serve, tmp_path):
    """Pyramid's development.ini ([app:main], [server:main], no [uwsgi]) run as
    `uwsgi --http :PORT --ini-paste development.ini`: uWSGI warns that the
    section is missing and loads the paste app; so does uwsgi-rs."""
    (tmp_path / "pasteapp.py").write_text(PASTE_APP)
    # A namespace portion, as test_migration's stub (see there).
    stub = tmp_path / "stub" / "paste"
    stub.mkdir(parents=True)
    (stub / "deploy.py").write_text(PASTE_STUB)
    write(tmp_path / "development.ini", """
        [app:main]
        use = call:pasteapp:make_app

        [server:main]
        use = egg:waitress#main
        listen = localhost:6543
        """)
    port = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--pythonpath", str(tmp_path / "stub"),
                 "--ini-paste", "development.ini"])
    status, _, body = http_get(port, "/")
    assert (status, body) == (200, b"pasted"), srv.log
    assert ("warning: development.ini has no [uwsgi] section: only its paste app is "
            "loaded (as uWSGI does)") in srv.log


def test_yaml_as_debians_uwsgi_reads_it(serve, tmp_path):
    """Quoted values and lists as uWSGI built with libyaml reads them; a line
    it cannot read is one report line naming file:line, and the keys after
    it still apply."""
    (tmp_path / "app.py").write_text(
        "import os\n\n\ndef application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [' '.join(os.environ.get(k, '-') for k in 'ABC').encode()]\n")
    port = free_port()
    yaml = write(tmp_path / "app.yaml", f"""
        uwsgi:
          http-socket: '127.0.0.1:{port}'
          env: [A=1, "B=two words"]
          bare:
          env:
            - C=3 # a comment
          wsgi-file: app.py
        """)
    srv = serve([str(yaml)])
    assert http_get(port, "/")[2] == b"1 two words 3"
    assert f"warning: {yaml}:4: not read: a key without a value: bare:" in srv.log


def test_yaml_nested_mapping_and_anchor_as_libyamls_reader(serve, tmp_path):
    """uWSGI's libyaml reader (core/yaml.c) takes the keys of a mapping
    nested under a key as options of their own, and stops reading at a value
    with an anchor: so does uwsgi-rs, and its report names both."""
    (tmp_path / "app.py").write_text(APP.format(body=b"nested"))
    port = free_port()
    yaml = write(tmp_path / "app.yaml", f"""
        uwsgi:
          http-socket: 127.0.0.1:{port}
          app:
            wsgi-file: app.py
          processes: 1
          workers: &n 4
          threads: 9
        """)
    srv = serve([str(yaml)])
    assert http_get(port, "/")[2] == b"nested"
    assert (f"warning: {yaml}:4: the keys of the mapping nested under 'app:' are options of "
            "their own, as uWSGI's libyaml reader reads them: wsgi-file: app.py") in srv.log
    assert (f"warning: {yaml}:6: not read: a YAML anchor or tag, where uWSGI stops reading "
            "the file ('unsupported YAML token')") in srv.log
    assert "1 worker(s) x 1 thread(s)" in srv.log


def test_wsgi_file_of_any_name(serve, tmp_path):
    """keystone-wsgi-public, app.wsgi: not .py, loaded all the same."""
    port = free_port()
    script = tmp_path / "keystone-wsgi-public"
    script.write_text(APP.format(body=b"keystone"))
    serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(script)])
    assert http_get(port, "/")[2] == b"keystone"


def test_module_first_then_wsgi_file(serve, tmp_path):
    """Both given: the module is loaded (uWSGI's order); the file only when
    the module cannot be imported, and the report says so."""
    (tmp_path / "mod_app.py").write_text(APP.format(body=b"module"))
    (tmp_path / "file_app.py").write_text(APP.format(body=b"file"))
    port = free_port()
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "file_app.py",
                 "--module", "mod_app"])
    assert http_get(port, "/")[2] == b"module"
    assert "--module mod_app and --wsgi-file file_app.py are both given" in srv.log
    port = free_port()
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "file_app.py",
                 "--module", "no_such_module_here"])
    assert http_get(port, "/")[2] == b"file"
    assert "cannot import module 'no_such_module_here'" in srv.log


def test_get_prints_expanded_values(tmp_path):
    ini = write(tmp_path / "app.ini", """
        [uwsgi]
        base = /srv/app
        virtualenv = %(base)/venv
        socket = %d%n.sock
        """)
    r = run(["--ini", str(ini), "--get", "home", "--get", "socket", "--get", "chdir"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"/srv/app/venv\n{tmp_path}/app.sock\n"


@pytest.mark.parametrize("args, needle", [
    (["--proceses", "4"], "unknown option: --proceses (did you mean --processes?)"),
    (["--http-socket", ":1", "--cheaper-algo", "lazy"],
     "invalid value 'lazy' for --cheaper-algo: expected spare, spare2, backlog, busyness or manual"),
    (["--http-socket", ":1", "--static-map", "/static"],
     "invalid value '/static' for --static-map: expected MOUNTPOINT=PATH"),
])
def test_bad_values_of_any_family_are_one_line(tmp_path, args, needle):
    r = run(args, tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == f"uwsgi-rs: {needle}"
