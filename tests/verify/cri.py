"""A pull the way a kubelet asks containerd for one: CRI's ImageService over containerd's socket, with
CRI's own credentials from config.toml (registry.configs.<host>.auth) and config_path's hosts.toml.
Debian ships no crictl, so the call is made with curl (HTTP/2 without TLS on the unix socket, gRPC's
framing) and printf: the request is two nested protobuf strings, built here.

    pull(ref)   -> a shell command printing the response's headers and trailers (grpc-status 0: done)
    remove(ref) -> the same for RemoveImage
"""

from __future__ import annotations

import re
import shlex

SOCKET = "/run/containerd/containerd.sock"
NAMESPACE = "k8s.io"  # CRI's images live in containerd's k8s.io namespace
SERVICE = "runtime.v1.ImageService"


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _string_field(number: int, value: bytes) -> bytes:
    """A protobuf length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def image_request(ref: str) -> bytes:
    """PullImageRequest and RemoveImageRequest alike: field 1, ImageSpec, whose field 1 is the image."""
    return _string_field(1, _string_field(1, ref.encode()))


def grpc_frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: not compressed, 4 bytes of length, the message."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def call(method: str, ref: str) -> str:
    body = "".join(f"\\{byte:03o}" for byte in grpc_frame(image_request(ref)))
    return (f"printf {shlex.quote(body)} | curl -sS --http2-prior-knowledge --unix-socket {SOCKET} "
            "-H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- -D - -o /dev/null "
            f"http://localhost/{SERVICE}/{method}")


def pull(ref: str) -> str:
    return call("PullImage", ref)


def remove(ref: str) -> str:
    return call("RemoveImage", ref)


def status(output: str) -> tuple[int | None, str]:
    """(grpc-status, grpc-message) of a call's headers and trailers; (None, "") without an answer."""
    code = re.search(r"^grpc-status:\s*(\d+)", output, re.M | re.I)
    message = re.search(r"^grpc-message:\s*(.*?)\s*$", output, re.M | re.I)
    return (int(code.group(1)) if code else None), (message.group(1) if message else "")
