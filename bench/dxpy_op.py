"""Time one dxpy upload or download in a process whose imports are already done.

`python -m bench.dxpy_op upload <local path> <project> <name>` or
`python -m bench.dxpy_op download <local path> <project> <file id>` prints
{"seconds": ..., "id": ...}: the same client library and calls as `dx upload --wait`
and `dx download`, without the CLI's interpreter start-up and imports. The
server is reached through the DX_* environment variables, as for `dx`.
"""

import json
import sys
import time


def main(argv):
    op, path, project, target = argv
    import dxpy  # (imported before the clock starts, after the environment is read)

    t0 = time.perf_counter()
    if op == "upload":
        handle = dxpy.upload_local_file(path, project=project, folder="/", name=target, wait_on_close=True)
        result = handle.get_id()
    elif op == "download":
        dxpy.download_dxfile(target, path, project=project)
        result = target
    else:
        raise SystemExit(f"unknown operation {op!r}")
    print(json.dumps({"seconds": time.perf_counter() - t0, "id": result}))


if __name__ == "__main__":
    main(sys.argv[1:])
