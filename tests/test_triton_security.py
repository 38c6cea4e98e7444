"""Triton hardening (issue 24): the repository API closed on `triton serve`, a warning off loopback,
decode errors and oversized pictures as one request's one-line error, the client over TLS
(grpcs:// against tritonserver's own TLS, https:// through a TLS proxy in front of its HTTP port,
certificates made here with openssl) with headers whose values never show, and `export --force`
replacing only a repository edgepose wrote. Real tritonserver on loopback (the nvidia-pytriton wheel)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import IMAGES, ROOT, need_service

pytest.importorskip("tritonclient.grpc", reason="needs the triton extra (tritonclient)")

from edgepose.triton.backend import decode_request_image, header_size  # noqa: E402
from edgepose.triton.client import RemoteEstimator, parse_headers, parse_servers  # noqa: E402
from edgepose.triton.repo import MARKER, ExportError, export_repository  # noqa: E402
from edgepose.triton.server import ServerError, TritonServer, exposure_warning, find_install  # noqa: E402

TOL = 0.01


def _picture() -> Path:
    return sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[0]


def _png(w: int, h: int, rows: bytes | None = None) -> bytes:
    """A grey PNG of w x h (all-zero rows compress to almost nothing); ``rows``: the IDAT data as given."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if rows is None:
        z = zlib.compressobj(1)
        line = bytes(w + 1)
        rows = b"".join(z.compress(line) for _ in range(h)) + z.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", rows) + chunk(b"IEND", b"")  # fmt: skip


def _need_server() -> None:
    try:
        find_install()
    except ServerError as e:
        need_service(f"no Triton server: {e}")


@pytest.fixture(scope="module")
def repo(model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton_sec") / "repo"
    export_repository(model_path, out)
    return out


@pytest.fixture(scope="module")
def server(repo):
    _need_server()
    with TritonServer(repo, startup_timeout=180, models=["edgepose_pipeline", "edgepose_imdecode"]) as srv:
        yield srv


def _post(url: str, body: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# -- the repository API ---------------------------------------------------------------------------
@pytest.mark.triton
def test_load_and_unload_requests_are_refused(server, tmp_path):
    """The attack of issue 24: load a model of one's own whose model.py runs as the server's user."""
    proof = tmp_path / "pwned"
    evil = f"open({str(proof)!r}, 'w').write('ran')\nclass TritonPythonModel:\n    def execute(self, r):\n        return []\n"
    cfg = {"name": "evil", "backend": "python", "max_batch_size": 0,
           "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}],
           "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}]}  # fmt: skip
    body = {"parameters": {"config": json.dumps(cfg), "file:1/model.py": base64.b64encode(evil.encode()).decode()}}
    code, text = _post(f"{server.http_url}/v2/repository/models/evil/load", body)
    assert code != 200 and "not allowed" in text, (code, text)
    code, text = _post(f"{server.http_url}/v2/repository/models/edgepose_pipeline/unload", {})
    assert code != 200 and "not allowed" in text, (code, text)
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    c = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))
    with pytest.raises(InferenceServerException, match="not allowed"):
        c.unload_model("edgepose_pipeline")
    with pytest.raises(InferenceServerException, match="not allowed"):
        c.load_model("evil", config=json.dumps(cfg), files={"file:1/model.py": evil.encode()})
    assert not proof.exists()
    assert not c.is_model_ready("evil") and c.is_model_ready("edgepose_pipeline")


def test_off_loopback_is_warned_before_anything(cli, tmp_path):
    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    assert exposure_warning("::1") is None
    code, _, err = cli("triton", "serve", "--repo", tmp_path / "none", "--host", "0.0.0.0")
    assert code != 0 and "listens on 0.0.0.0" in err and "anyone who reaches" in err
    code, _, err = cli("triton", "serve", "--repo", tmp_path / "none")
    assert code != 0 and "listens on" not in err


# -- decoding on the server -----------------------------------------------------------------------
def test_header_sizes_match_the_decoded_pictures():
    img = cv2.imread(str(_picture()))
    h, w = img.shape[:2]
    for ext in (".jpg", ".png", ".bmp", ".webp"):
        ok, buf = cv2.imencode(ext, img)
        assert ok and header_size(buf.tobytes()) == (w, h), ext
    for params in ([cv2.IMWRITE_WEBP_QUALITY, 101], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):  # lossless WebP, progressive JPEG
        ext = ".webp" if params[0] == cv2.IMWRITE_WEBP_QUALITY else ".jpg"
        ok, buf = cv2.imencode(ext, img, params)
        assert header_size(buf.tobytes()) == (w, h), params
    assert header_size(_picture().read_bytes()) == (w, h)  # the file's own bytes (EXIF etc. before the frame)
    assert header_size(b"II*\x00" + bytes(100)) is None  # TIFF: the size is not in a fixed header
    assert header_size(_png(50000, 50000, rows=b"")) == (50000, 50000)


def test_a_bomb_is_refused_before_decoding():
    bomb = _png(10000, 9000)  # 90 MP (270 MB decoded) in a few hundred KB
    assert len(bomb) < 400_000
    with pytest.raises(ValueError, match=r"10000x9000 = 90000000 pixels is above the server's cap"):
        decode_request_image(bomb)
    img, _ = decode_request_image(_png(64, 48))
    assert img.shape == (48, 64, 3)


@pytest.mark.triton
def test_decode_errors_are_the_requests_own_one_line(server, estimator):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    c = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))

    def send(data: bytes, model: str):
        t = grpcclient.InferInput("image_bytes", [1, 1], "BYTES")
        t.set_data_from_numpy(np.array([[data]], dtype=np.object_))
        return c.infer(model, [t])

    cases = [
        (_png(50000, 50000, rows=zlib.compress(b"")), "50000x50000 = 2500000000 pixels is above the server's cap"),
        (_png(10000, 9000), "10000x9000 = 90000000 pixels is above the server's cap"),
        (_png(64, 48, rows=b"\x78\x9c garbage that is not deflate"), "not a readable image"),
        (b"II*\x00" + bytes(64), "not a JPEG, PNG, BMP or WebP"),
    ]  # fmt: skip
    for model in ("edgepose_pipeline", "edgepose_imdecode"):
        for data, words in cases:
            with pytest.raises(InferenceServerException) as ei:
                send(data, model)
            msg = ei.value.message()
            assert words in msg and "\n" not in msg.strip(), (model, msg)
    good = _picture().read_bytes()  # the models go on serving
    res = send(good, "edgepose_pipeline")
    img = cv2.imread(str(_picture()))
    want = estimator.predict(img).keypoints()
    got = res.as_numpy("keypoints")[0]
    assert got.shape == want.shape and (not got.size or np.abs(got - want).max() <= TOL)
    assert send(good, "edgepose_imdecode").as_numpy("image_size")[0].tolist() == [img.shape[1], img.shape[0]]


# -- the client: TLS and headers ------------------------------------------------------------------
def _certs(d: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl), plus a stranger CA."""
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")

    def run(*a: str) -> None:
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)

    for ca in ("ca", "other"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=edgepose test {ca}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "server.pem", "-extfile", "ext.cnf")  # fmt: skip
    return {"ca": d / "ca.pem", "other": d / "other.pem", "cert": d / "server.pem", "key": d / "server.key"}


class _TLSProxy:
    """TLS on a loopback port, forwarded in clear to ``target`` (a TLS front for Triton's plain HTTP)."""

    def __init__(self, target: tuple[str, int], cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes_failed = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            raw.close()
            return
        up = socket.create_connection(self.target)

        def pump(a, b) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(up, conn), daemon=True).start()
        pump(conn, up)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def tls_server(repo, tmp_path_factory):
    _need_server()
    certs = _certs(tmp_path_factory.mktemp("certs"))
    secret = "s3cr3t-" + base64.b32encode(np.random.default_rng().bytes(10)).decode()
    with TritonServer(repo, startup_timeout=180, models=["edgepose_pipeline"], tls=(certs["cert"], certs["key"]),
                      require_header=("x-edgepose-key", secret)) as srv:  # fmt: skip
        proxy = _TLSProxy(("127.0.0.1", srv.http_port), certs["cert"], certs["key"])
        try:
            yield srv, certs, secret, f"https://127.0.0.1:{proxy.port}"
        finally:
            proxy.close()


def test_server_urls_and_headers_parse():
    assert parse_servers("grpcs://h:1,https://h2:2,grpc://h3:3,http://[::1]:4") == [
        ("grpcs", "h:1"), ("https", "h2:2"), ("grpc", "h3:3"), ("http", "[::1]:4")]  # fmt: skip
    with pytest.raises(ValueError) as ei:
        parse_servers("grpcs://admin:hunter2@h:1")
    assert "hunter2" not in str(ei.value) and "--server-header" in str(ei.value)
    assert parse_headers(["Authorization=Bearer a=b", "x-key=1"]) == {"Authorization": "Bearer a=b", "x-key": "1"}
    for bad in (["novalue"], ["bad name=x"], ["x=a\r\nInjected: 1"]):
        with pytest.raises(ValueError) as ei:
            parse_headers(bad)
        assert "Injected" not in str(ei.value)


@pytest.mark.triton
@pytest.mark.parametrize("kind", ["grpcs", "https"])
def test_tls_with_headers_matches_a_local_run(tls_server, estimator, kind):
    srv, certs, secret, https_url = tls_server
    url = srv.grpc_url if kind == "grpcs" else https_url
    assert url.startswith(f"{kind}://")
    remote = RemoteEstimator(url, ca_file=certs["ca"], headers=srv.client_headers, timeout=20)
    img = cv2.imread(str(_picture()))
    got, want = remote.predict(img).keypoints(), estimator.predict(img).keypoints()
    assert got.shape == want.shape and (not got.size or np.abs(got - want).max() <= TOL)
    assert secret not in repr(remote) and secret not in "\n".join(remote.summary())
    assert secret not in json.dumps(remote.server_stats())


@pytest.mark.triton
@pytest.mark.parametrize("kind", ["grpcs", "https"])
def test_tls_refuses_a_stranger_and_the_header_is_needed(tls_server, kind):
    srv, certs, secret, https_url = tls_server
    url = srv.grpc_url if kind == "grpcs" else https_url
    with pytest.raises(ServerError, match="no Triton server ready"):  # a certificate signed by someone else
        RemoteEstimator(url, ca_file=certs["other"], headers=srv.client_headers, timeout=1)
    wrong = {k: "wrong-" + v for k, v in srv.client_headers.items()}
    with pytest.raises(ServerError, match="restricted|not ready") as ei:  # the right CA, a wrong key: refused, key not shown
        RemoteEstimator(url, ca_file=certs["ca"], headers=wrong, timeout=1)
    assert secret not in str(ei.value)
    with pytest.raises(ServerError, match="restricted|not ready"):  # no key
        RemoteEstimator(url, ca_file=certs["ca"], timeout=1)
    plain = url.replace("grpcs://", "grpc://").replace("https://", "http://")
    with pytest.raises(ServerError):  # TLS only
        RemoteEstimator(plain, headers=srv.client_headers, timeout=1)


@pytest.mark.triton
def test_cli_sends_headers_over_tls_and_never_prints_them(tls_server, estimator):
    """A real process with -v (in-process, pytest would take the log lines)."""
    srv, certs, secret, _ = tls_server
    pic = _picture()

    def cli(*a: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "edgepose", "-v", "run", str(pic), "--server", srv.grpc_url, "--server-ca",
               str(certs["ca"]), "--no-progress", *a]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)

    p = cli(*(a for k, v in srv.client_headers.items() for a in ("--server-header", f"{k}={v}")),
            "--server-header", "x-other=also-hidden")
    assert p.returncode == 0, p.stderr
    assert "INFO" in p.stderr  # the -v log is there, without the values
    n = len(estimator.predict(cv2.imread(str(pic))).people)
    assert f"{pic.name}: {n} people" in p.stdout, p.stdout
    assert secret not in p.stdout + p.stderr and "also-hidden" not in p.stdout + p.stderr
    p = cli(*(a for k, v in srv.client_headers.items() for a in ("--server-header", f"{k}=wrong-{v}")),
            "--server-timeout", "1")
    assert p.returncode == 2 and secret not in p.stdout + p.stderr, p.stderr


# -- export --force -------------------------------------------------------------------------------
def test_force_replaces_only_an_edgepose_repository(model_path, tmp_path, cli):
    mine = tmp_path / "photos"
    (mine / "2024").mkdir(parents=True)
    (mine / "2024" / "a.jpg").write_bytes(b"mine")
    code, _, err = cli("triton", "export", "--model", model_path, "--repo", mine, "--force")
    assert code == 2 and "nothing was deleted" in err and len(err.strip().splitlines()) == 1
    assert (mine / "2024" / "a.jpg").read_bytes() == b"mine" and sorted(p.name for p in mine.iterdir()) == ["2024"]
    assert [p.name for p in tmp_path.iterdir()] == ["photos"]  # no temporary folder left behind

    repo = tmp_path / "repo"
    assert cli("triton", "export", "--model", model_path, "--repo", repo)[0] == 0
    assert (repo / MARKER).is_file()
    (repo / "edgepose_pipeline" / "1" / "stale.txt").write_text("old")
    assert cli("triton", "export", "--model", model_path, "--repo", repo, "--force")[0] == 0
    assert not (repo / "edgepose_pipeline" / "1" / "stale.txt").exists()

    (repo / MARKER).unlink()  # written before the marker: every folder's config is edgepose's
    export_repository(model_path, repo, force=True)
    assert (repo / MARKER).is_file()

    (repo / MARKER).unlink()
    (repo / "other_model").mkdir()
    (repo / "other_model" / "config.pbtxt").write_text('name: "other_model"\nbackend: "python"\n')
    with pytest.raises(ExportError, match="other_model.*nothing was deleted"):
        export_repository(model_path, repo, force=True)
    assert (repo / "other_model" / "config.pbtxt").is_file() and (repo / "edgepose_net").is_dir()
    (repo / "other_model" / "config.pbtxt").unlink()
    (repo / "other_model").rmdir()
    (repo / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="notes.txt"):
        export_repository(model_path, repo, force=True)
    assert (repo / "notes.txt").read_text() == "mine"
