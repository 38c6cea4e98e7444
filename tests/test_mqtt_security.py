"""MQTT with a login and TLS (issue 24, item 5): a real mosquitto on loopback with a password file, and
one with TLS and client certificates (a CA, a server and a client certificate made here with openssl).
The password never appears in any output; a wrong one is one clear refusal."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from conftest import IMAGES, MODEL, need_service
from test_sinks import free_port, mosquitto_binary

pytest.importorskip("paho.mqtt.client", reason="the mqtt extra is not installed")

PASSWORD = "p@ss:w/rd"


class Mosquitto:
    def __init__(self, tmp: Path, extra: str, port: int) -> None:
        exe = mosquitto_binary()
        if exe is None:
            need_service("mosquitto is not installed (make system-deps)")
        self.port = port
        conf = tmp / "m.conf"
        # as root mosquitto drops to its own user, which cannot read the files in pytest's private tmp
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"{user}listener {port} 127.0.0.1\npersistence false\n{extra}")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stdout.read().decode(errors="replace")) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def _passwd(tmp: Path) -> Path:
    f = tmp / "passwd"
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", "-c", str(f), "cam", PASSWORD],
                   check=True, capture_output=True)  # fmt: skip
    f.chmod(0o600)
    return f


def _certs(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        need_service("openssl is not installed")

    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=tmp)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=edgepose test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (tmp / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return {k: tmp / k for k in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def _run(cli, tmp_path, *extra):
    out = tmp_path / "o.jsonl"
    code, stdout, err = cli("run", IMAGES / "tfpose__p1.jpg", "--model", MODEL, "--device", "cpu", "--no-progress",
                            "--jsonl", out, *extra)  # fmt: skip
    return code, stdout + err


def _subscribe(port: int, **tls) -> list:
    import threading

    import paho.mqtt.client as mqtt

    got, ready = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.username_pw_set("cam", PASSWORD)
    if tls:
        c.tls_set(**tls)
    c.on_connect = lambda c, u, f, rc, p=None: c.subscribe("edgepose/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(5)
    got.append(c)
    return got


def test_password_file_broker(tmp_path, cli, monkeypatch):
    b = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {_passwd(tmp_path)}\n", free_port())
    try:
        sub = _subscribe(b.port)
        # the password from a file: accepted, published, never printed
        pw = tmp_path / "mqtt.pw"
        pw.write_text(PASSWORD + "\n")
        code, text = _run(cli, tmp_path, "--mqtt", f"mqtt://cam@127.0.0.1:{b.port}/edgepose/t", "--mqtt-password-file", pw)
        assert code == 0, text
        deadline = time.monotonic() + 5
        while len(sub) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sub) == 2 and sub[1]["people"]
        # in the URL (percent-escaped) and from the environment: accepted, never printed
        from urllib.parse import quote

        code, text = _run(cli, tmp_path, "--mqtt-qos", "1", "--mqtt",
                          f"mqtt://cam:{quote(PASSWORD, safe='')}@127.0.0.1:{b.port}/edgepose/t")  # fmt: skip
        assert code == 0 and PASSWORD not in text and quote(PASSWORD, safe="") not in text, text
        monkeypatch.setenv("EDGEPOSE_MQTT_PASSWORD", PASSWORD)
        code, text = _run(cli, tmp_path, "--mqtt", f"cam@127.0.0.1:{b.port}/edgepose/t")
        assert code == 0, text
        monkeypatch.delenv("EDGEPOSE_MQTT_PASSWORD")
        # a wrong password: one clear refusal, nothing written, the password not echoed
        code, text = _run(cli, tmp_path, "--mqtt", f"mqtt://cam:Wr0ngPw@127.0.0.1:{b.port}/edgepose/t")
        assert code == 2 and "refused the connection" in text and "Wr0ngPw" not in text, text
        # no login at all
        code, text = _run(cli, tmp_path, "--mqtt", f"127.0.0.1:{b.port}/edgepose/t")
        assert code == 2 and "refused the connection" in text
        sub[0].loop_stop()
    finally:
        b.stop()


def test_tls_broker_with_client_certificates(tmp_path, cli):
    c = _certs(tmp_path)
    b = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {_passwd(tmp_path)}\ncafile {c['ca.crt']}\n"
                  f"certfile {c['server.crt']}\nkeyfile {c['server.key']}\nrequire_certificate true\n", free_port())  # fmt: skip
    try:
        sub = _subscribe(b.port, ca_certs=str(c["ca.crt"]), certfile=str(c["client.crt"]), keyfile=str(c["client.key"]),
                         cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        pw = tmp_path / "mqtt.pw"
        pw.write_text(PASSWORD)
        base = ["--mqtt", f"mqtts://cam@127.0.0.1:{b.port}/edgepose/tls", "--mqtt-password-file", pw]
        code, text = _run(cli, tmp_path, *base, "--mqtt-ca", c["ca.crt"], "--mqtt-cert", c["client.crt"],
                          "--mqtt-key", c["client.key"])  # fmt: skip
        assert code == 0, text
        deadline = time.monotonic() + 5
        while len(sub) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(sub) == 2 and sub[1]["people"]
        # without our CA the server's certificate is not trusted: refused, nothing sent
        code, text = _run(cli, tmp_path, *base, "--mqtt-cert", c["client.crt"], "--mqtt-key", c["client.key"])
        assert code == 2 and "cannot connect to the MQTT broker at mqtts://127.0.0.1" in text, text
        # without a client certificate the broker refuses
        code, text = _run(cli, tmp_path, *base, "--mqtt-ca", c["ca.crt"])
        assert code == 2 and "MQTT broker" in text, text
        assert PASSWORD not in text
        sub[0].loop_stop()
    finally:
        b.stop()
