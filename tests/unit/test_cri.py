"""The verify suite's CRI call (tests/verify/cri.py): protobuf and gRPC framing, answers read."""

from tests.verify import cri


def test_the_request_is_an_image_spec_inside_the_request():
    # field 1 (length-delimited: tag 0x0a) holding field 1 holding the reference
    assert cri.image_request("r:5000/a:1") == b"\x0a\x0c\x0a\x0ar:5000/a:1"
    long = "r/" + "x" * 200  # lengths past 127 take two varint bytes
    assert cri.image_request(long)[:3] == b"\x0a\xcd\x01" and cri.image_request(long)[3:6] == b"\x0a\xca\x01"


def test_the_frame_carries_the_length_big_endian():
    assert cri.grpc_frame(b"abc") == b"\0\0\0\0\x03abc"


def test_status_reads_headers_and_trailers():
    answer = "HTTP/2 200 \r\ncontent-type: application/grpc\r\n\r\ngrpc-status: 2\r\ngrpc-message: failed to pull: 401\r\n"
    assert cri.status(answer) == (2, "failed to pull: 401")
    assert cri.status("curl: (7) Couldn't connect") == (None, "")
