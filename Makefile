# The two commands of the README, and the checks they rest on.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check format sysdeps schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo,cameras]'
	touch $(STAMP)

# mosquitto for the tests (the demo falls back to an embedded broker without it).
sysdeps:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		if command -v apt-get >/dev/null 2>&1; then \
			echo "installing mosquitto with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				mosquitto >/dev/null; \
			test -x /usr/sbin/mosquitto || command -v mosquitto >/dev/null || \
				{ echo "mosquitto did not install" >&2; exit 1; }; \
		else \
			echo "mosquitto is missing and apt-get is not available" >&2; exit 1; \
		fi; \
	fi
	@# ffmpeg makes the cameras' test clips and serves them as MJPEG; GStreamer's RTSP
	@# server, run under the system Python, serves them over RTSP.
	@if ! command -v ffmpeg >/dev/null 2>&1 || ! /usr/bin/python3 -c "import gi; \
		gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1; then \
			echo "installing ffmpeg and the GStreamer RTSP server with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
				gstreamer1.0-plugins-good gstreamer1.0-plugins-bad >/dev/null; \
			command -v ffmpeg >/dev/null || { echo "ffmpeg did not install" >&2; exit 1; }; \
		else \
			echo "ffmpeg or GStreamer is missing and apt-get is not available" >&2; exit 1; \
		fi; \
	fi

demo: $(STAMP)
	$(BIN)/edgeagent demo

check: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: check sysdeps
	$(BIN)/pytest

schema: $(STAMP)
	$(BIN)/edgeagent schema -o config/edgeagent.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
