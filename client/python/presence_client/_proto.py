"""The generated stubs of presence.v1 (built by CMake, never checked in)."""

__all__ = ["pb", "pb_grpc"]

try:
    from presence.v1 import presence_pb2 as pb
    from presence.v1 import presence_pb2_grpc as pb_grpc
except ImportError as error:  # pragma: no cover - an environment problem
    raise ImportError(
        "presence_client needs the generated stubs of presence.v1: build them "
        "with `cmake --build build` and put build/client/python/gen on "
        "PYTHONPATH (see client/python/README.md)") from error
