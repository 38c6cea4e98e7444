"""Triton: repository export (configs parse with Triton's schema), and a real tritonserver on loopback
(the nvidia-pytriton wheel in .venv-triton, made by `make triton-venv`; started here, stopped after):
the same keypoints as a local run, concurrent clients with dynamic batching, bad requests, a server
killed mid-run, a server that never comes up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import IMAGES, ROOT, VIDEO, need_service

pytest.importorskip("tritonclient.grpc", reason="needs the triton extra (tritonclient)")

from edgepose.triton.repo import ExportError, ExportOptions, export_repository, parse_config  # noqa: E402
from edgepose.triton.server import ServerError, TritonServer, find_install, free_port  # noqa: E402

TOL = 0.01  # px: the same ONNX Runtime on both sides
SMALL = (160, 128)  # a small budget for the load tests: fast on 2 shared cores


def _pictures(n: int = 3) -> list[Path]:
    return sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape, f"{a.shape} people vs {b.shape}"
    if a.size:
        assert np.abs(a - b).max() <= TOL


@pytest.fixture(scope="module")
def repo(model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    # the default queue delay (0): the batching test below shows that requests queued while the
    # instance is busy are still batched
    export_repository(model_path, out, ExportOptions(max_batch_size=8))
    return out


@pytest.fixture(scope="module")
def server(repo):
    try:
        find_install()
    except ServerError as e:
        need_service(f"no Triton server: {e}")
    with TritonServer(repo, startup_timeout=180) as srv:
        yield srv


# -- export ---------------------------------------------------------------------------------------
def test_every_config_parses_and_holds_no_local_path(repo, model_path):
    names = {p.parent.name for p in repo.glob("*/config.pbtxt")}
    assert names == {"edgepose", "edgepose_bytes", "edgepose_net", "edgepose_decode", "edgepose_imdecode", "edgepose_pipeline"}
    for cfg_path in repo.glob("*/config.pbtxt"):
        text = cfg_path.read_text()
        cfg = parse_config(text)
        assert cfg.name == cfg_path.parent.name
        assert str(model_path.parent) not in text and str(ROOT) not in text
        assert "edgepose_meta" in cfg.parameters
    net = parse_config((repo / "edgepose_net" / "config.pbtxt").read_text())
    assert net.backend == "onnxruntime" and net.max_batch_size == 8
    assert net.HasField("dynamic_batching") and net.dynamic_batching.max_queue_delay_microseconds == 0
    assert list(net.input[0].dims) == [-1, -1, 3]
    for f in repo.rglob("*"):
        if f.suffix == ".py":
            assert str(ROOT) not in f.read_text()


def test_gpu_tensorrt_options_parse(model_path, tmp_path):
    opt = ExportOptions(kind="gpu", gpus=[0], instances=2, tensorrt=True, python_env="/opt/envs/edgepose.tar.gz",
                        queue_delay_us=500)  # fmt: skip
    export_repository(model_path, tmp_path / "r", opt)
    net = parse_config((tmp_path / "r" / "edgepose_net" / "config.pbtxt").read_text())
    assert net.dynamic_batching.max_queue_delay_microseconds == 500
    assert net.instance_group[0].kind == net.instance_group[0].KIND_GPU and net.instance_group[0].count == 2
    trt = net.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert "trt_engine_cache_path" not in trt.parameters  # no predictable shared cache folder by default
    export_repository(model_path, tmp_path / "r3", ExportOptions(kind="gpu", tensorrt=True, trt_cache="/srv/trt"))
    trt = parse_config((tmp_path / "r3" / "edgepose_net" / "config.pbtxt").read_text()).optimization \
        .execution_accelerators.gpu_execution_accelerator[0]
    assert trt.parameters["trt_engine_cache_path"] == "/srv/trt" and trt.parameters["trt_engine_cache_enable"] == "1"
    pipe = parse_config((tmp_path / "r" / "edgepose_pipeline" / "config.pbtxt").read_text())
    assert pipe.parameters["EXECUTION_ENV_PATH"].string_value == "/opt/envs/edgepose.tar.gz"
    with pytest.raises(ExportError, match="GPU"):
        export_repository(model_path, tmp_path / "r2", ExportOptions(tensorrt=True))


def test_existing_folder_is_refused_unless_force(model_path, tmp_path, cli):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = cli("triton", "export", "--model", model_path, "--repo", out)
    assert code == 2 and "already exists" in err and (out / "keep.txt").read_text() == "mine"
    code, _, err = cli("triton", "export", "--model", model_path, "--repo", out, "--force")  # not edgepose's folder
    assert code == 2 and "nothing was deleted" in err and (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()  # an empty folder may be replaced
    code, stdout, _ = cli("triton", "export", "--model", model_path, "--repo", out, "--force")
    assert code == 0 and (out / "edgepose_pipeline" / "1" / "model.onnx").is_file()


def test_model_without_metadata_is_a_clear_error(tmp_path, cli):
    from tiny_models import tiny_model

    m = tiny_model(tmp_path / "bare.onnx", metadata=False)
    code, _, err = cli("triton", "export", "--model", m, "--repo", tmp_path / "repo")
    assert code == 2 and "no edgepose metadata" in err and not (tmp_path / "repo").exists()


@pytest.mark.parametrize("layout", ["mpi15", "body25"])
def test_other_layouts_export_with_their_channels(tmp_path, layout):
    from tiny_models import tiny_model

    from edgepose.layouts import get_layout

    lay = get_layout(layout)
    m = tiny_model(tmp_path / f"{layout}.onnx", heat=lay.heatmap_channel_count, paf=lay.paf_channel_count, layout=layout)
    export_repository(m, tmp_path / "repo")
    dec = parse_config((tmp_path / "repo" / "edgepose_decode" / "config.pbtxt").read_text())
    assert dec.input[0].dims[0] == lay.heatmap_channel_count and dec.output[0].dims[1] == lay.num_parts


def test_folded_network_sees_the_local_input(repo, estimator):
    """The onnxruntime-backend network takes uint8 letterboxed frames: its maps equal the local ones."""
    import onnxruntime as ort

    from edgepose.triton.wire import letterbox_frame

    img = cv2.imread(str(_pictures(1)[0]))
    x, box = estimator.preprocess(img)
    frame = letterbox_frame(img, box)
    sess = ort.InferenceSession(str(repo / "edgepose_net" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    hm, paf = sess.run(["heatmaps", "pafs"], {"frame": frame[None]})
    hm0, paf0 = estimator.infer(x[None])
    assert np.abs(hm - hm0).max() < 1e-4 and np.abs(paf - paf0).max() < 1e-4


# -- a real server --------------------------------------------------------------------------------
@pytest.mark.triton
def test_serve_loads_what_it_can_and_names_the_rest(server):
    assert set(server.loaded) == {"edgepose_pipeline", "edgepose_decode", "edgepose_imdecode"}
    assert "onnxruntime" in server.skipped["edgepose_net"]
    assert "edgepose_net" in server.skipped["edgepose"]


@pytest.mark.triton
@pytest.mark.parametrize("scheme,wire", [("grpc", "raw"), ("http", "raw"), ("grpc", "png")])
def test_pictures_match_a_local_run(server, estimator, scheme, wire):
    from edgepose.triton import RemoteEstimator

    url = server.grpc_url if scheme == "grpc" else server.http_url
    remote = RemoteEstimator(url, wire=wire)
    assert remote.model_name == "edgepose_pipeline"  # no ensemble without the onnxruntime backend
    for p in _pictures():
        img = cv2.imread(str(p))
        r = remote.predict(img)
        assert r.image_size == (img.shape[1], img.shape[0])
        _same(r.keypoints(), estimator.predict(img).keypoints())


@pytest.mark.triton
def test_picture_sent_as_its_own_bytes_matches(server, estimator):
    from edgepose.triton import RemoteEstimator

    remote = RemoteEstimator(server.grpc_url, wire="jpeg")
    p = _pictures(1)[0]
    r = remote.predict_bytes(p.read_bytes(), source=p.name)
    img = cv2.imread(str(p))
    assert r.image_size == (img.shape[1], img.shape[0])
    _same(r.keypoints(), estimator.predict(img).keypoints())


@pytest.mark.triton
def test_video_through_the_stream_matches_a_local_stream(server, estimator):
    from edgepose.triton import RemoteEstimator

    remote = RemoteEstimator(server.grpc_url, in_flight=3)
    got = list(remote.stream(VIDEO, max_frames=24, track=False))
    want = list(estimator.stream(VIDEO, max_frames=24, track=False, workers=1))
    assert [r.index for r in got] == [r.index for r in want] == list(range(24))
    for a, b in zip(got, want):
        assert a.ok and a.image_size == b.image_size
        _same(a.keypoints(), b.keypoints())


@pytest.mark.triton
def test_eight_clients_fifty_frames_batched(server, model_path):
    import tritonclient.grpc as grpcclient

    from edgepose.runner import PoseEstimator
    from edgepose.triton import RemoteEstimator

    imgs = [cv2.imread(str(p)) for p in _pictures(4)]
    local = PoseEstimator(model_path, device="cpu", threads=2, size=SMALL)
    want = [local.predict(i).keypoints() for i in imgs]
    stats = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))
    before = stats.get_inference_statistics("edgepose_pipeline").model_stats[0]
    results: dict[int, list] = {}
    errors: list = []

    def client(c: int) -> None:
        try:
            est = RemoteEstimator(server.grpc_url, size=SMALL, in_flight=2)
            frames = [imgs[(c + k) % len(imgs)] for k in range(50)]
            results[c] = [(k, r) for k, r in enumerate(est.predict_batch(frames, index=0))]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    for c, rs in results.items():
        assert [r.index for _, r in rs] == list(range(50))  # every answer, in order
        for k, r in rs:
            _same(r.keypoints(), want[(c + k) % len(imgs)])
    after = stats.get_inference_statistics("edgepose_pipeline").model_stats[0]
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == 400
    assert executions < inferences, f"dynamic batching did not batch: {executions} executions for {inferences} frames"


@pytest.mark.triton
def test_bad_requests_fail_alone(server, estimator):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from edgepose.triton import RemoteEstimator
    from edgepose.triton.client import RequestError

    c = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))

    def send(name, arr, dtype, model="edgepose_pipeline"):
        t = grpcclient.InferInput(name, list(arr.shape), dtype)
        t.set_data_from_numpy(arr)
        extra = []
        if name == "frame":
            lb = grpcclient.InferInput("letterbox", [1, 4], "INT32")
            lb.set_data_from_numpy(np.array([[64, 64, 64, 64]], np.int32))
            extra = [lb]
        return c.infer(model, [t, *extra])

    with pytest.raises(InferenceServerException, match="(?i)data.?type|FP32|UINT8"):
        send("frame", np.zeros((1, 64, 64, 3), np.float32), "FP32")
    with pytest.raises(InferenceServerException, match="(?i)shape|dims"):
        send("frame", np.zeros((1, 64, 64, 4), np.uint8), "UINT8")
    with pytest.raises(InferenceServerException, match="(?i)unknown model|not found|unavailable"):
        send("frame", np.zeros((1, 64, 64, 3), np.uint8), "UINT8", model="no_such_model")
    remote = RemoteEstimator(server.grpc_url, wire="jpeg")
    with pytest.raises(RequestError, match="not a readable image"):
        remote.predict_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(RequestError, match="empty"):
        remote.predict_bytes(b"")
    assert remote.server_stats()[0]["up"] and remote.server_stats()[0]["refused"] == 2
    img = cv2.imread(str(_pictures(1)[0]))  # and the server goes on serving
    _same(RemoteEstimator(server.grpc_url).predict(img).keypoints(), estimator.predict(img).keypoints())


@pytest.mark.triton
def test_forced_ensemble_shows_the_servers_refusal(server, cli):
    img = _pictures(1)[0]
    code, _, err = cli("run", img, "--server", server.grpc_url, "--server-model", "ensemble", "--no-progress")
    assert code == 2
    assert "model edgepose is not available" in err
    assert "explicit model load / unload is not allowed" in err  # the server's words: its repository API is closed


@pytest.mark.triton
def test_server_that_never_comes_up_is_exit_2(cli):
    port = free_port()
    code, _, err = cli("run", _pictures(1)[0], "--server", f"grpc://127.0.0.1:{port}", "--server-timeout", "1")
    assert code == 2 and "no Triton server ready" in err


@pytest.mark.triton
def test_two_servers_one_killed_mid_run(server, repo, estimator):
    from edgepose.triton import RemoteEstimator

    with TritonServer(repo, startup_timeout=180, models=["edgepose_pipeline"]) as second:
        remote = RemoteEstimator(f"{server.grpc_url},{second.grpc_url}", in_flight=4, retry_delay=0.2, timeout=20)
        got = []
        for r in remote.stream(VIDEO, max_frames=40, track=False):
            got.append(r)
            if len(got) == 8:
                second.kill()
        stats = {s["server"]: s for s in remote.server_stats()}
    assert [r.index for r in got] == list(range(40))  # none lost, none doubled, in order
    assert all(r.ok for r in got)
    assert stats[second.grpc_url]["outages"] >= 1 and not stats[second.grpc_url]["up"]
    assert stats[server.grpc_url]["frames"] + stats[second.grpc_url]["frames"] == 40
    assert any("taken out" in line for line in remote.summary())
    want = list(estimator.stream(VIDEO, max_frames=40, track=False, workers=1))
    for a, b in zip(got, want):
        _same(a.keypoints(), b.keypoints())


@pytest.mark.triton
def test_serve_command_prints_urls_and_stops_on_sigterm(repo):
    try:
        find_install()
    except ServerError as e:
        need_service(f"no Triton server: {e}")
    cmd = [sys.executable, "-m", "edgepose", "triton", "serve", "--repo", str(repo), "--grpc-port", "0",
           "--http-port", "0", "--models", "edgepose_decode"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ))
    try:
        line = p.stdout.readline()
        assert line.startswith("ready: grpc://127.0.0.1:"), line + p.stderr.read()
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
        assert "stopped" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.triton
def test_ensemble_steps_decode_and_imdecode_match_local(server, estimator):
    """The ensemble's Python steps on their own (the network step needs the onnxruntime backend):
    maps in -> the local decoder's people; image bytes in -> the local letterboxed frame."""
    import tritonclient.grpc as grpcclient

    from edgepose.triton.wire import box_to_array, letterbox_frame

    c = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))
    p = _pictures(1)[0]
    img = cv2.imread(str(p))
    x, box = estimator.preprocess(img)
    hm, paf = estimator.infer(x[None])
    ins = []
    for name, arr, dt in (("heatmaps", hm, "FP32"), ("pafs", paf, "FP32"), ("letterbox", box_to_array(box)[None], "INT32")):
        t = grpcclient.InferInput(name, list(arr.shape), dt)
        t.set_data_from_numpy(np.ascontiguousarray(arr))
        ins.append(t)
    res = c.infer("edgepose_decode", ins)
    people, _ = estimator.decode_maps(hm[0], paf[0], box)
    want = np.stack([q.keypoints for q in people]) if people else np.zeros((0, 18, 3), np.float32)
    _same(res.as_numpy("keypoints")[0], want)
    t = grpcclient.InferInput("image_bytes", [1, 1], "BYTES")
    t.set_data_from_numpy(np.array([[p.read_bytes()]], dtype=np.object_))
    res = c.infer("edgepose_imdecode", [t])
    assert np.array_equal(res.as_numpy("frame")[0], letterbox_frame(img, box))
    assert res.as_numpy("letterbox")[0].tolist() == box_to_array(box).tolist()
