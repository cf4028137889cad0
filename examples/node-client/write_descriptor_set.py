"""Write Triton's gRPC protocol as a protobuf FileDescriptorSet, for gRPC clients in other languages.

The pip package ``tritonclient[grpc]`` ships Triton's ``grpc_service.proto`` (package
``inference``) and ``model_config.proto`` compiled into ``service_pb2`` / ``model_config_pb2``;
this writes their descriptors (the service file and its imports, dependencies first) so that
``@grpc/proto-loader``'s ``loadFileDescriptorSetFromBuffer`` (or ``protoc --descriptor_set_in``
for other languages) can load the protocol of exactly the Triton release the client package
matches, without copying .proto files around.

    python write_descriptor_set.py triton-grpc.binpb
"""
from __future__ import annotations

import argparse
from pathlib import Path

from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2


def descriptor_set() -> bytes:
    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            add(dependency)
        out.file.append(descriptor_pb2.FileDescriptorProto.FromString(file_descriptor.serialized_pb))

    add(service_pb2.DESCRIPTOR)
    return out.SerializeToString()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="file to write (e.g. triton-grpc.binpb)")
    args = parser.parse_args(argv)
    args.out.write_bytes(descriptor_set())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes: grpc_service.proto + model_config.proto)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
