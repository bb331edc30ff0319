"""An RTSP server on loopback for the tests: GStreamer's, serving an H.264 clip.

Run with the system Python (`/usr/bin/python3 tests/rtsp_server.py PORT CLIP`), whose
`gi` bindings a virtualenv cannot import. Prints "ready" once it listens.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, clip = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # The clip is sent as it is (no re-encoding), at its own pace, to every client.
    factory.set_launch(
        f"( filesrc location={clip} ! qtdemux ! h264parse "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
