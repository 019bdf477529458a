#!/usr/bin/env python3
"""Regenerate aiodock/_proto/ (betterproto2 + grpclib code) from protos/ in one protoc invocation.

    python scripts/gen_protos.py           # rewrite aiodock/_proto/
    python scripts/gen_protos.py --check   # generate into a temp dir, exit 1 with a diff if the committed code differs

One invocation gives one shared message_pool and one google.protobuf package. The compiler formats its output with
ruff, so the output is deterministic for a given compiler version.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "protos"
OUTPUT_DIR = REPO_ROOT / "aiodock" / "_proto"
SHADOWED_IMPORT = "from google.protobuf.descriptor import Descriptor\n"
PACKAGE_DOC = '"""betterproto2-generated containerd API code. Do not edit: run scripts/gen_protos.py."""\n'


def grpc_tools_include() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc",
        "-I", str(PROTO_DIR),
        "-I", str(grpc_tools_include()),
        f"--python_betterproto2_out={out_dir}",
        "--python_betterproto2_opt=client_generation=async",
        "--python_betterproto2_opt=server_generation=async",
        *proto_files(),
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_DIR)
    drop_shadowed_descriptor_import(out_dir)
    init = out_dir / "__init__.py"
    if not init.exists() or not init.read_text().strip():
        init.write_text(PACKAGE_DOC)


def drop_shadowed_descriptor_import(out_dir: Path) -> None:
    """Work around a betterproto2-compiler 0.10 template quirk.

    Its header always imports ``google.protobuf.descriptor.Descriptor`` and lets ruff drop unused imports; in a
    module that defines its own ``Descriptor`` message (containerd.types) the import survives, is shadowed by the
    class, and would make the protobuf runtime a dependency. Remove it there.
    """
    for module in out_dir.rglob("*.py"):
        text = module.read_text()
        if SHADOWED_IMPORT in text and "\nclass Descriptor(" in text:
            module.write_text(text.replace(SHADOWED_IMPORT, "", 1))


def snapshot(tree: Path) -> dict[str, str]:
    if not tree.exists():
        return {}
    return {
        str(p.relative_to(tree)): p.read_text()
        for p in sorted(tree.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="adk-proto-") as tmp:
        fresh = Path(tmp) / "_proto"
        generate(fresh)
        want, have = snapshot(fresh), snapshot(OUTPUT_DIR)
    if want == have:
        print("aiodock/_proto is up to date")
        return 0
    for name in sorted(set(want) | set(have)):
        if want.get(name) != have.get(name):
            sys.stdout.writelines(
                difflib.unified_diff(
                    have.get(name, "").splitlines(keepends=True),
                    want.get(name, "").splitlines(keepends=True),
                    fromfile=f"committed/{name}",
                    tofile=f"generated/{name}",
                )
            )
    print("aiodock/_proto is stale: run python scripts/gen_protos.py", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail with a diff if aiodock/_proto is stale")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    with tempfile.TemporaryDirectory(prefix="adk-proto-", dir=OUTPUT_DIR.parent) as tmp:
        fresh = Path(tmp) / "_proto"
        generate(fresh)
        if OUTPUT_DIR.exists():
            shutil.rmtree(OUTPUT_DIR)
        os.replace(fresh, OUTPUT_DIR)
    print(f"generated {len(snapshot(OUTPUT_DIR))} modules into {OUTPUT_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
