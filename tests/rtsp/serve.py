#!/usr/bin/python3
"""An RTSP camera for the tests: H.264 video (10 fps, a keyframe every 2 s) and AAC audio
from live test sources, served by GStreamer's RTSP server on 127.0.0.1.

    serve.py [PORT]    prints "ready rtsp://127.0.0.1:PORT/cam" once it listens (no PORT
                       or 0: a free one, chosen by the system)

The tests freeze it with SIGSTOP, as an IP camera that hangs would, and thaw it with
SIGCONT.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=10/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=20 ! rtph264pay name=pay0 pt=96 "
    "audiotestsrc is-live=true wave=pink-noise volume=0.3 ! audio/x-raw,rate=48000,channels=1 "
    "! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )"
)


def main() -> None:
    port = sys.argv[1] if len(sys.argv) > 1 else "0"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", flush=True)
        sys.exit(1)
    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
