"""Regenerates src/gamemesh_client/_proto/client_pb2.py(i) from the contract.

Run from anywhere, in an environment with the dev extra installed
(``pip install -e 'clients/python[dev]'``, which brings grpcio-tools and its
bundled protoc):

    python clients/python/gen_proto.py          # rewrite the generated files
    python clients/python/gen_proto.py --check  # fail if they are stale

The generated files are committed so that ``pip install clients/python``
needs no protoc; ``--check`` (run by scripts/test.sh) keeps them in step
with proto/proto/client.proto.
"""

import argparse
import pathlib
import sys
import tempfile

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parent.parent / "proto" / "proto"
OUT_DIR = HERE / "src" / "gamemesh_client" / "_proto"
GENERATED = ("client_pb2.py", "client_pb2.pyi")


def generate(out_dir: pathlib.Path) -> None:
    """Runs the protoc bundled with grpcio-tools on client.proto."""
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(PROTO_DIR / "client.proto"),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed on client.proto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    check = parser.parse_args().check
    if not check:
        generate(OUT_DIR)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        stale = [
            name for name in GENERATED
            if (pathlib.Path(tmp) / name).read_bytes() != (OUT_DIR / name).read_bytes()
        ]
    if stale:
        sys.exit(f"{', '.join(stale)} are stale: run python clients/python/gen_proto.py")


if __name__ == "__main__":
    main()
