# The two commands of the README, and the checks they rest on.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check format sysdeps schema clean sysdeps-ops reference install install-venv install-files uninstall wheelhouse

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo,cameras]'
	touch $(STAMP)

# mosquitto for the tests (the demo falls back to an embedded broker without it).
sysdeps: sysdeps-ops
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
	@# openssl makes the MQTT TLS tests' certificates (mosquitto brings mosquitto_passwd).
	@if ! command -v openssl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		echo "installing openssl with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			openssl >/dev/null; \
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

# gpsd and gpsfake for the test of the GNSS driver's gpsd source.
.PHONY: sysdeps-gpsd
sysdeps: sysdeps-gpsd
sysdeps-gpsd:
	@if ! command -v gpsfake >/dev/null 2>&1 || [ ! -x /usr/sbin/gpsd ]; then \
		if command -v apt-get >/dev/null 2>&1; then \
			echo "installing gpsd and gpsd-clients with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				gpsd gpsd-clients >/dev/null; \
			command -v gpsfake >/dev/null || { echo "gpsfake did not install" >&2; exit 1; }; \
		else \
			echo "gpsd/gpsfake are missing and apt-get is not available" >&2; exit 1; \
		fi; \
	fi

test: check sysdeps
	$(BIN)/pytest

schema: $(STAMP)
	$(BIN)/edgeagent schema -o config/edgeagent.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# systemd's tools check the unit; Debian's chromium drives the status page's browser test;
# openssl makes the certificate of the page's HTTPS test.
OPS_SYSDEPS := systemd chromium openssl
sysdeps-ops:
	@if ! command -v systemd-analyze >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ] || \
		! command -v openssl >/dev/null 2>&1; then \
		if command -v apt-get >/dev/null 2>&1; then \
			echo "installing $(OPS_SYSDEPS) with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				$(OPS_SYSDEPS) >/dev/null; \
			command -v systemd-analyze >/dev/null && test -x /usr/bin/chromium && \
				command -v openssl >/dev/null || \
				{ echo "$(OPS_SYSDEPS) did not install" >&2; exit 1; }; \
		else \
			echo "one of $(OPS_SYSDEPS) is missing and apt-get is not available" >&2; \
			exit 1; \
		fi; \
	fi

# Install on a gateway: the daemon in its own virtualenv under /opt, the unit and its
# companions, an example udev rule, and a configuration skeleton that an upgrade never
# overwrites. With a wheelhouse (see below) the install needs no network.
DESTDIR ?=
OPT_DIR ?= /opt/edgeagent
UNIT_DIR ?= /usr/lib/systemd/system
EXTRAS ?=
WHEELHOUSE ?= wheelhouse
PURGE ?=
INSTALL_PYTHON ?= python3
install: install-venv install-files

install-venv:
	@set -e; root="$(DESTDIR)"; \
	if [ -d "$(WHEELHOUSE)" ]; then \
		source="--no-index --find-links $(abspath $(WHEELHOUSE)) edgeagent$(if $(EXTRAS),[$(EXTRAS)])"; \
	else \
		source="$(CURDIR)$(if $(EXTRAS),[$(EXTRAS)])"; \
	fi; \
	$(INSTALL_PYTHON) -m venv --clear "$$root$(OPT_DIR)"; \
	"$$root$(OPT_DIR)/bin/pip" install --quiet --disable-pip-version-check $$source

install-files:
	@set -e; root="$(DESTDIR)"; \
	install -D -m 0644 systemd/edgeagent.service "$$root$(UNIT_DIR)/edgeagent.service"; \
	install -D -m 0644 systemd/edgeagent.sysusers "$$root/usr/lib/sysusers.d/edgeagent.conf"; \
	install -D -m 0644 systemd/edgeagent.tmpfiles "$$root/usr/lib/tmpfiles.d/edgeagent.conf"; \
	install -D -m 0644 README.md "$$root/usr/share/doc/edgeagent/README.md"; \
	install -D -m 0644 config/example.yaml "$$root/usr/share/doc/edgeagent/example.yaml"; \
	install -D -m 0644 systemd/60-edgeagent-gnss.rules \
		"$$root/usr/share/doc/edgeagent/60-edgeagent-gnss.rules"; \
	if [ ! -e "$$root/etc/udev/rules.d/60-edgeagent-gnss.rules" ]; then \
		install -D -m 0644 systemd/60-edgeagent-gnss.rules \
			"$$root/etc/udev/rules.d/60-edgeagent-gnss.rules"; \
	fi; \
	install -d -m 0750 "$$root/etc/edgeagent" "$$root/etc/edgeagent/secrets"; \
	if [ ! -e "$$root/etc/edgeagent/edgeagent.yaml" ]; then \
		install -m 0640 config/example.yaml "$$root/etc/edgeagent/edgeagent.yaml"; \
	else \
		echo "kept $$root/etc/edgeagent/edgeagent.yaml; the new example is in /usr/share/doc/edgeagent"; \
	fi; \
	if [ -z "$$root" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers edgeagent.conf; \
		systemd-tmpfiles --create edgeagent.conf; \
		chgrp edgeagent /etc/edgeagent/edgeagent.yaml; \
		systemctl daemon-reload; \
		udevadm control --reload || true; \
		echo "installed; put the secrets in /etc/edgeagent/secrets, then:"; \
		echo "  edgeagent check-config /etc/edgeagent/edgeagent.yaml"; \
		echo "  systemctl enable --now edgeagent"; \
	fi

# Remove the daemon and its unit; configuration, secrets and the outbox stay unless
# PURGE=1 (the outbox may hold events not yet delivered).
uninstall:
	@set -e; root="$(DESTDIR)"; \
	if [ -z "$$root" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now edgeagent.service 2>/dev/null || true; \
	fi; \
	rm -rf "$$root$(OPT_DIR)" "$$root/usr/share/doc/edgeagent"; \
	rm -f "$$root$(UNIT_DIR)/edgeagent.service" "$$root/usr/lib/sysusers.d/edgeagent.conf" \
		"$$root/usr/lib/tmpfiles.d/edgeagent.conf"; \
	if [ -n "$(PURGE)" ]; then \
		rm -rf "$$root/etc/edgeagent" "$$root/var/lib/edgeagent" \
			"$$root/etc/udev/rules.d/60-edgeagent-gnss.rules"; \
	else \
		echo "kept $$root/etc/edgeagent and $$root/var/lib/edgeagent (PURGE=1 removes them)"; \
	fi; \
	if [ -z "$$root" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Every wheel an offline install needs, for a target platform: PLATFORM is a wheel
# platform tag (manylinux2014_aarch64 for a 64-bit ARM gateway, manylinux2014_armv7l,
# manylinux2014_x86_64), empty for this machine; TARGET_PYTHON the gateway's Python.
PLATFORM ?=
TARGET_PYTHON ?= 3.11
wheelhouse:
	@set -e; rm -rf "$(WHEELHOUSE)"; mkdir -p "$(WHEELHOUSE)"; \
	$(INSTALL_PYTHON) -m pip wheel --quiet --no-deps --wheel-dir "$(WHEELHOUSE)" .; \
	wheel=$$(ls "$(WHEELHOUSE)"/edgeagent-*.whl); \
	if [ -n "$(PLATFORM)" ]; then \
		target="--platform $(PLATFORM) --python-version $(TARGET_PYTHON) --implementation cp"; \
	else \
		target=""; \
	fi; \
	$(INSTALL_PYTHON) -m pip download --quiet --only-binary=:all: $$target \
		--dest "$(WHEELHOUSE)" "$$wheel$(if $(EXTRAS),[$(EXTRAS)])"; \
	echo "$(WHEELHOUSE): $$(ls "$(WHEELHOUSE)" | wc -l) wheels for $(or $(PLATFORM),this machine)"

# The README's configuration reference, from the same models as the schema.
reference: $(STAMP)
	$(BIN)/python -m edgeagent.reference README.md
