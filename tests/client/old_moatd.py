#!/usr/bin/env python3
# A moatd without run_brief (older than moatctl's front), for
# tests/client/front_test.sh: old_moatd.py SOCKET LOG serves two connections,
# writes each request's op to LOG, refuses any op but `run` as an old moatd
# does ("unknown op"), and answers a `run` with a job that exited 3.
import json, os, socket, struct, sys

path, log = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(4)


def frame(c, obj):
    b = json.dumps(obj).encode()
    c.sendall(struct.pack(">I", len(b)) + b)


for _ in range(2):
    c, _ = srv.accept()
    msg, anc, _, _ = c.recvmsg(4 << 20, socket.CMSG_SPACE(3 * 4))
    for _lvl, _typ, data in anc:
        for fd in struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]):
            os.close(fd)
    while len(msg) < 4 or len(msg) < 4 + struct.unpack(">I", msg[:4])[0]:
        more = c.recv(1 << 20)
        if not more:
            break
        msg += more
    op = json.loads(msg[4:])["op"]
    with open(log, "a") as f:
        f.write(op + "\n")
    if op != "run":
        frame(c, {"ok": False, "code": "bad-request", "error": f'unknown op "{op}"'})
    else:
        frame(c, {"ok": True, "job": 7})
        frame(c, {"ok": True, "finished": {"id": 7, "exit_code": 3, "signal": None,
                                           "termination": {"cause": "exited", "detail": "exit code 3"}}})
    c.close()
