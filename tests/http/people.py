"""People for the HTTP tests: administrators with TOTP, who log in over HTTP
and approve dual-control requests.

The first administrators of a deployment are created locally (as
``kmsframe users create`` does), here by opening the served data directory
in-process; everything after that goes through the real server.
"""

from __future__ import annotations

import time

import httpx

from kmsframe.access.totp import Totp
from kmsframe.config import embedded_config
from kmsframe.deployment import Deployment

PASSWORD = "correct horse battery staple"
STAFF = {
    **{f"sa{i}": ("security_admin",) for i in range(1, 7)},
    **{f"op{i}": ("operator",) for i in range(1, 3)},
    **{f"ka{i}": ("key_admin",) for i in range(1, 7)},
    **{f"sys{i}": ("system_admin",) for i in range(1, 4)},
    "aud1": ("auditor",),
}


class People:
    def __init__(self, server: object) -> None:
        self.server = server
        self.totp: dict[str, Totp] = {}
        self.last_step: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        with Deployment.open(embedded_config(server.data_dir)) as d:  # type: ignore[attr-defined]
            for name, roles in STAFF.items():
                if d.access.users.find(name) is None:
                    d.access.users.create(name, PASSWORD, frozenset(roles))
                self.totp[name] = d.access.users.totp_of(name)

    def code(self, name: str) -> str:
        """A fresh code: never the same time step twice for a user."""
        totp = self.totp[name]
        while True:
            now = totp.step(time.time())
            # Never the previous step: the server's clock may pass a step
            # boundary before it checks the code.
            step = max(now, self.last_step.get(name, -1) + 1)
            if step <= now + 1:
                break
            time.sleep(1)  # every code of the window is used: wait for the next step
        self.last_step[name] = step
        return totp.code_at(step * totp.params.period)

    def login(self, name: str) -> str:
        if name not in self.tokens:
            r = httpx.post(f"{self.server.url}/v1/login", timeout=30,  # type: ignore[attr-defined]
                           json={"user": name, "password": PASSWORD, "totp": self.code(name)})
            assert r.status_code == 201, r.text
            self.tokens[name] = r.json()["token"]
        return self.tokens[name]

    def client(self, name: str) -> httpx.Client:
        return self.server.client(token=self.login(name))  # type: ignore[attr-defined]

    def approve(self, name: str, request_id: str) -> httpx.Response:
        with self.client(name) as c:
            return c.post(f"/v1/approvals/{request_id}/approve", json={"totp": self.code(name)})

    def approve_all(self, pending: dict, exclude: str = "") -> dict:
        """Approve ``pending`` with enough distinct staff for its quorum."""
        assert pending["status"] == "pending", pending
        done = pending
        used = {exclude, pending["requester"]}
        for role, count in pending["requirements"].items():
            # TOTP codes are single-use (three per minute or so a person):
            # pick whoever has used the fewest.
            names = sorted((n for n, roles in STAFF.items() if role in roles and n not in used),
                           key=lambda n: self.last_step.get(n, -1))[:count]
            assert len(names) == count, f"not enough {role}s"
            for name in names:
                used.add(name)
                r = self.approve(name, pending["id"])
                assert r.status_code == 200, r.text
                done = r.json()
        return done
