"""`make lab`, the README's main-job command, starts JupyterLab on the students' working copy;
`make lab-instructor` serves the tracked notebooks with autosave off."""

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import websocket

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, token, path, method="GET", body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {token}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return json.loads(raw) if raw else None


def run_code(port, token, kernel_id, code, timeout=60.0) -> str:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: token {token}"], timeout=timeout)  # fmt: skip
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))  # fmt: skip
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError(f"kernel error: {msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
    raise AssertionError("the kernel did not answer in time")


def start_lab(target: str, extra: list[str]):
    """Start ``make <target>`` on a free port; return (process, port, token, output so far)."""
    port, token = free_port(), secrets.token_hex(16)
    args = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    proc = subprocess.Popen(["make", "--no-print-directory", target, f"LAB_ARGS={args}", *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            api(port, token, "/api/status")
            return proc, port, token
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                output = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                stop(proc)
                pytest.fail(f"JupyterLab did not start (exit code {proc.poll()}):\n{output[-3000:]}")
            time.sleep(0.5)


@pytest.fixture
def lab_server(tmp_path):
    """`make lab` with the working copy in a temporary folder (CI runs as root: make lab must
    add --allow-root by itself)."""
    work = tmp_path / "work"
    proc, port, token = start_lab("lab", [f"LAB_DIR={work}"])
    try:
        yield port, token, work, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything make started, whether or not it is still running."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def test_make_lab_serves_the_working_copy_and_a_kernel_imports_course_lib(lab_server):
    port, token, work, proc = lab_server
    listed = sorted(item["name"] for item in api(port, token, "/api/contents/")["content"] if item["type"] == "notebook")
    assert listed == NOTEBOOKS
    assert sorted(p.name for p in work.glob("*.ipynb")) == NOTEBOOKS
    # the working copy has the exercises without their solutions
    served = api(port, token, "/api/contents/02-exponentially-weighted-averages.ipynb")["content"]
    sources = ["".join(c["source"]) for c in served["cells"]]
    assert any("raise NotImplementedError" in s and "def half_life" in s for s in sources)
    assert not any("np.log(0.5)" in s for s in sources)
    page = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/lab",
                                  headers={"Authorization": f"token {token}"}), timeout=10)  # fmt: skip
    assert page.status == 200 and b"JupyterLab" in page.read()
    kernel = api(port, token, "/api/kernels", method="POST", body={"name": "python3"})
    try:
        printed = run_code(port, token, kernel["id"], "import course_lib, course_lib.optim\nprint(course_lib.__file__)")
        assert Path(printed.strip()).resolve() == (ROOT / "course_lib" / "__init__.py").resolve()
    finally:
        api(port, token, f"/api/kernels/{kernel['id']}", method="DELETE")


def test_make_lab_instructor_serves_the_solutions_with_autosave_off():
    proc, port, token = start_lab("lab-instructor", [])
    try:
        listed = sorted(item["name"] for item in api(port, token, "/api/contents/")["content"]
                        if item["type"] == "notebook")  # fmt: skip
        assert listed == NOTEBOOKS
        served = api(port, token, "/api/contents/02-exponentially-weighted-averages.ipynb")["content"]
        assert any("np.log(0.5)" in "".join(c["source"]) for c in served["cells"])
        settings = api(port, token, "/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
        assert settings["settings"]["autosave"] is False
    finally:
        stop(proc)
