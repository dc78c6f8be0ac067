"""What scripts/load and scripts/events-bench share: HS256 tokens for the service's test
secret, a free port, and a process's memory from /proc."""

import base64
import hashlib
import hmac
import json
import socket
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(user: str, secret: str, lifetime_secs: int) -> str:
    """A JWT for `user` signed with `secret`, as the service verifies it (HS256)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = b64(json.dumps({"sub": user, "iat": now, "exp": now + lifetime_secs}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid: int, field: str) -> int:
    """A memory line of /proc/PID/status in KiB: `VmRSS` now, `VmHWM` at its peak."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
