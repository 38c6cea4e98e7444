# Thin aliases over `python -m ...`; the venv is made on first use.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
EXTRAS  ?= cpu,convert,eval,track,bench,mqtt,video,demo,dev,triton
MODEL   ?= models/mobilenet_thin.onnx
DATA    ?= ../shared/data

.PHONY: venv triton-venv bench-triton model demo test lint variants report-variants bench bench-stream bench-stream-memory bench-quick eval clean system-deps check-arm64 check-arm64-smoke check-x86-haswell

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip wheel setuptools cython numpy
	$(VPY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

venv: $(VENV)/.installed

# The Triton server for development and tests: the nvidia-pytriton wheel (tritonserver with the Python
# backend) needs numpy<2, so it gets its own venv, which is also the Python the server's models run in:
# edgepose (editable) and the main venv's onnxruntime version (the same keypoints as a local run).
TVENV   ?= .venv-triton
$(TVENV)/.installed: pyproject.toml $(VENV)/.installed
	$(PY) -m venv $(TVENV)
	$(TVENV)/bin/python -m pip install -q --upgrade pip
	$(TVENV)/bin/python -m pip install -q 'nvidia-pytriton==0.7.0' 'numpy<2' 'opencv-python-headless>=4.5' tqdm \
		"onnxruntime==$$($(VPY) -c 'import onnxruntime; print(onnxruntime.__version__)')"
	$(TVENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

triton-venv: $(TVENV)/.installed

model: venv
	$(VPY) -m edgepose convert tfpose --out $(MODEL)

demo: model
	$(VPY) -m edgepose demo --model $(MODEL) --out-dir demo_out

# The MQTT sink's tests start a real broker (Debian's mosquitto) on loopback.
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null) \
	      || echo "warning: could not install mosquitto; the MQTT tests will be skipped"; \
	  else echo "note: install mosquitto for the MQTT tests (apt-get install mosquitto)"; fi; }
	@# the Triton Python backend's stub links the system's libpython of the venv's Python version
	@v=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	ldconfig -p 2>/dev/null | grep -q "libpython$$v.so.1.0" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libpython$$v >/dev/null) \
	      || echo "warning: could not install libpython$$v; the Triton tests will be skipped"; \
	  else echo "note: install libpython$$v for the Triton tests (apt-get install libpython$$v)"; fi; }
	@# a real headless browser for the live view's test (tests/test_preview_security.py)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "note: install chromium for the live view's browser test (apt-get install chromium)"; fi; }
	@# a real RTSP server for tests/test_rtsp.py: GStreamer's, driven by the system Python (tests/rtsp_server.py)
	@/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('x264enc')" 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-gi \
	      gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	      gstreamer1.0-plugins-ugly gstreamer1.0-libav >/dev/null) \
	      || echo "warning: could not install GStreamer's RTSP server; the RTSP tests will be skipped"; \
	  else echo "note: install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad,ugly} for the RTSP tests"; fi; }

test: model system-deps triton-venv
	$(VPY) -m pytest -q

lint: venv
	$(VPY) -m ruff check edgepose converters tests benchmarks tools

FP16    := $(MODEL:.onnx=.fp16.onnx)
INT8    := $(MODEL:.onnx=.int8.onnx)

# rebuilt when the fp32 model changes; `make variants` always rebuilds both
$(FP16): $(MODEL)
	$(VPY) -m edgepose convert variant $(MODEL) --variant fp16

$(INT8): $(MODEL)
	$(VPY) -m edgepose convert variant $(MODEL) --variant int8 \
		--calib $(DATA)/images $(DATA)/video/mmaction2__demo_skeleton.mp4 --augment flip

variants: model
	rm -f $(FP16) $(INT8)
	$(MAKE) $(FP16) $(INT8)

eval: model
	$(VPY) -m edgepose eval --model $(MODEL) --annotations $(DATA)/coco-val-mini/person_keypoints.json \
		--images $(DATA)/coco-val-mini/images

bench: model
	$(VPY) -m edgepose bench --model $(MODEL) --data $(DATA) --accuracy --readme
	$(MAKE) bench-lwop

report-variants: model $(FP16) $(INT8)
	$(VPY) -m edgepose report-variants $(MODEL) --annotations $(DATA)/coco-val-mini/person_keypoints.json \
		--images $(DATA)/coco-val-mini/images --out-dir benchmarks/results/variants --profile

# BEFORE=<git ref>: this tree's stream against that ref's, in one run (the ratio after/before)
bench-stream: model
	$(VPY) benchmarks/stream_bench.py --rounds 7 --passes 3 --configs t2w1,t1w2 --retries 3 $(if $(BEFORE),--compare $(BEFORE))

bench-stream-memory: model
	$(VPY) benchmarks/stream_bench.py --loop 10000 --configs t1w2

# Triton: server vs local throughput and latency, the server hop, the JPEG wire (docs/triton.md)
bench-triton: model triton-venv
	$(VPY) benchmarks/triton_bench.py --model $(MODEL) --data $(DATA)

bench-quick: model
	$(VPY) -m edgepose bench --model $(MODEL) --data $(DATA) --quick

clean:
	rm -rf $(VENV) $(TVENV) models demo_out .pytest_cache

# Proof on the boards' own platforms by emulation (docs/boards.md). arm64: Debian bookworm root
# cached in ~/.cache/edgepose/arm64-root, needs root (mmdebstrap, binfmt_misc, chroot).
BOARDS := $(VPY) tools/check_boards.py --model $(MODEL) --data $(DATA)

check-arm64: model $(INT8)
	$(BOARDS) arm64

check-arm64-smoke: model $(INT8)
	$(BOARDS) smoke

check-x86-haswell: model $(INT8)
	$(BOARDS) haswell

# edgepose tune (docs/tune.md): the issue's figure (15 fps here, AP on coco-val-mini), and the quick run
.PHONY: tune tune-quick
tune: model $(FP16) $(INT8)
	$(VPY) -m edgepose tune --model $(MODEL) --frames $(DATA)/video/mmaction2__demo_skeleton.mp4 --target-fps 15 \
		--annotations $(DATA)/coco-val-mini/person_keypoints.json --images $(DATA)/coco-val-mini/images \
		--out build/tune/profile.json

tune-quick: model
	$(VPY) -m edgepose tune --model $(MODEL) --frames $(DATA)/video/mmaction2__demo_skeleton.mp4 --target-fps 15 \
		--quick --out build/tune/quick-profile.json

# Multi-scale and flip inference (docs/accuracy.md): AP and time per frame of the combinations the
# `accurate` preset was chosen from, with the single-scale presets in the same run.
.PHONY: study-multiscale check-gpu
study-multiscale: model
	$(VPY) benchmarks/multiscale_study.py --combos default:1:0 default:1:1 large:1:0 large:1:1 \
		large:1,0.7:0 large:1.2,0.8:0 large:1,0.5:1 large:1,0.6:1 large:1.2,0.8,0.5:0 large:1.25,1,0.5:0

# CUDA/TensorRT for real (docs/boards.md): one prepared run on a machine with an NVIDIA GPU and
# onnxruntime-gpu; without a GPU provider it stops with the install hint (exit 2).
check-gpu: model $(INT8)
	$(VPY) benchmarks/gpu_check.py --model $(MODEL) --data $(DATA)

# Lightweight OpenPose from Open Model Zoo's OpenVINO IR (docs/models.md): fp32 and int8 builds.
# OMZ_DIR: the folder with human-pose-estimation-0001.xml/.bin, or an omz_downloader output folder
# (its intel/human-pose-estimation-0001/FP16-INT8/ layout); the int8 build needs the FP16-INT8 IR.
.PHONY: model-lwop omz-venv ortov-venv bench-lwop
OMZ_DIR    ?= $(DATA)/models/omz-human-pose-estimation-0001/FP16-INT8
LWOP       ?= models/lwop.onnx
LWOP_INT8  ?= models/lwop-int8.onnx
LWOP_IR     = $(firstword $(wildcard $(addsuffix /human-pose-estimation-0001.xml,$(OMZ_DIR) \
	$(OMZ_DIR)/FP16-INT8 $(OMZ_DIR)/human-pose-estimation-0001/FP16-INT8 \
	$(OMZ_DIR)/intel/human-pose-estimation-0001/FP16-INT8)))
model-lwop: venv
	@test -n "$(LWOP_IR)" || { echo "no human-pose-estimation-0001.xml under OMZ_DIR=$(OMZ_DIR); get it with" \
	  "omz_downloader --name human-pose-estimation-0001 --precisions FP16-INT8 -o DIR, then make model-lwop OMZ_DIR=DIR"; exit 2; }
	$(VPY) -m edgepose convert openvino --xml $(LWOP_IR) --out $(LWOP)
	$(VPY) -m edgepose convert openvino --xml $(LWOP_IR) --out $(LWOP_INT8) --precision int8

# The peer for Lightweight OpenPose: Intel's own pipeline (OpenVINO + openvino-model-api's OpenPose
# wrapper, last shipped in 0.2.5.x, which pins numpy<2 and OpenVINO 2024) in its own venv; AP on
# coco-val-mini and time per frame against edgepose's converted models in one run (docs/models.md)
OVENV   ?= .venv-omz
$(OVENV)/.installed:
	$(PY) -m venv $(OVENV)
	$(OVENV)/bin/python -m pip install -q 'openvino-model-api==0.2.5.4' opencv-python-headless
	touch $@

omz-venv: $(OVENV)/.installed

# edgepose with ONNX Runtime's OpenVINO provider (onnxruntime-openvino replaces onnxruntime: own venv)
OVEP    ?= .venv-ortov
$(OVEP)/.installed: pyproject.toml
	$(PY) -m venv $(OVEP)
	$(OVEP)/bin/python -m pip install -q onnxruntime-openvino numpy opencv-python-headless tqdm
	$(OVEP)/bin/python -m pip install -q --no-deps -e .
	touch $@

ortov-venv: $(OVEP)/.installed

bench-lwop: model-lwop omz-venv ortov-venv $(INT8)
	$(VPY) benchmarks/omz_peer.py --fp32 $(LWOP) --int8 $(LWOP_INT8) --out benchmarks/results/lwop-vs-omz-$$(date +%Y-%m-%d).json
	$(VPY) benchmarks/models_table.py $(MODEL) $(INT8) $(LWOP) $(LWOP_INT8) --out benchmarks/results/models-$$(date +%Y-%m-%d).json
