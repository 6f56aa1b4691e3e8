"""JupyterHub on one machine, two users, one Redis: nyo-realtime across users' servers.

Started by `run.sh` next to this file (which starts the Redis, and is what
tests/e2e/test_jupyterhub_e2e.py runs); read docs/deployment.md, "JupyterHub with
one Redis", for what each part is for. For trying it out, not for production:
anyone may log in as "ada" or "bob" with any password, and every user's server
runs as the OS user that runs the hub.

Environment (run.sh sets them):

- `NYO_HUB_DIR`: the hub's state (database, cookie secret, pid files) and the
  users' homes, `$NYO_HUB_DIR/homes/<name>`.
- `NYO_REDIS_URL`: the Redis every user's server shares.
- `NYO_HUB_PORT`: the hub's port on 127.0.0.1, 8000 by default.
"""

import os
import sys

c = get_config()  # noqa: F821

state = os.path.abspath(os.environ.get("NYO_HUB_DIR", "nyo-hub-demo"))
redis_url = os.environ.get("NYO_REDIS_URL", "redis://127.0.0.1:6379/0")

# Who may log in. The DummyAuthenticator accepts any password: for a demo only.
# JupyterHub 5 lets nobody in unless told who: `allowed_users`, or
# `c.Authenticator.allow_all = True` for anyone the authenticator accepts.
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {"ada", "bob"}

# Every user's server is a process of the hub's own OS user, in a home of its own
# (created at the first spawn). Production spawners run each user as themselves
# (LocalProcessSpawner with system users, DockerSpawner, KubeSpawner).
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(state, "homes", "{username}")
# The single-user server of the hub's own environment, where nyo-realtime-ext is installed.
singleuser = os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")
if os.path.exists(singleuser):
    c.Spawner.cmd = [singleuser]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {"PYTHONUNBUFFERED": "1"}  # servers' log lines as they happen

# The one line nyo-realtime needs: every user's server on the same Redis. `extend`
# adds to the spawner's arguments; `c.Spawner.args = [...]` would replace any
# set before it in this file. (A `--Spawner.args` on the command line replaces
# them all, and `c.Spawner.args + [...]` fails when nothing set them before.)
c.Spawner.args.extend([f"--Realtime.redis_url={redis_url}"])
if os.geteuid() == 0:
    # jupyter-server refuses to run as root without --allow-root, and the hub sees
    # only a server that never answers: "Running as root is not recommended. Use
    # --allow-root to bypass." in the log, then a spawn timeout. Here the servers
    # run as the hub's user, so a hub started as root needs it; a spawner that runs
    # each user as themselves does not.
    c.Spawner.args.extend(["--allow-root"])

# The hub's state in one directory, not in the working directory.
os.makedirs(state, exist_ok=True)
c.JupyterHub.db_url = "sqlite:///" + os.path.join(state, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(state, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(state, "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = os.path.join(state, "proxy.pid")
# Only this machine: http://127.0.0.1:8000, or the port in $NYO_HUB_PORT.
c.JupyterHub.bind_url = "http://127.0.0.1:{}".format(os.environ.get("NYO_HUB_PORT", "8000"))
