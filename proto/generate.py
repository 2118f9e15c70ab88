"""Regenerate the Python stubs from `maillage.proto` (run after editing the contract).

`python -m maillage.proto.generate` writes them next to the .proto; `--check` exits non-zero when
the committed stubs differ from what the installed grpcio-tools would generate (CI runs it as a test).
The generated gRPC module imports its message module absolutely; we rewrite that one import to be
relative so the stubs work inside the `maillage.proto` package.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "maillage.proto"
OUTPUTS = ("maillage_pb2.py", "maillage_pb2.pyi", "maillage_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc  # build-time dependency only (extra "test")

    include = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main([
        "protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out_dir}",
        f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", str(HERE / PROTO),
    ])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    grpc_module = out_dir / "maillage_pb2_grpc.py"
    text = grpc_module.read_text()
    grpc_module.write_text(text.replace("import maillage_pb2 as", "from . import maillage_pb2 as"))


def stale_outputs() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [name for name in OUTPUTS
                if not (HERE / name).exists()
                or (HERE / name).read_text() != (Path(tmp) / name).read_text()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the stubs are fresh")
    args = parser.parse_args()
    if args.check:
        stale = stale_outputs()
        if stale:
            sys.exit(f"stale generated stubs: {', '.join(stale)}; run python -m maillage.proto.generate")
        print("generated stubs are up to date")
        return
    generate(HERE)
    print(f"wrote {', '.join(OUTPUTS)} in {HERE}")


if __name__ == "__main__":
    main()
