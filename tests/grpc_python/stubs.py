"""Python stubs of the node's protocol, generated at import time from our proto/ files
(CYXWIZ_PROTO_DIR) with grpcio-tools, so the tests speak exactly the wire contract."""

import os
import sys
import tempfile

from grpc_tools import protoc


def generate():
    proto_dir = os.environ["CYXWIZ_PROTO_DIR"]
    out = tempfile.mkdtemp(prefix="cyxwiz-stubs-")
    files = [os.path.join("cyxwiz", f) for f in sorted(os.listdir(os.path.join(proto_dir, "cyxwiz")))]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", *files])
    assert code == 0, "protoc failed"
    sys.path.insert(0, out)


generate()
