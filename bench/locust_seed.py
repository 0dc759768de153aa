"""Accounts and LOTs for bench/locustfile.py, made the way the system makes them, on any running API.

One admin with the real `mes user add` (it finds the local stack's database through `.state/mes.env`, or the
bench stack's environment), then through the API as that admin: an account per simulated user (`POST
/api/v1/users`, operators, managers and SSE listeners), and LOTs with explicit numbers on past production days
(`POST /api/v1/lots`, spread over the manager accounts; a number that already exists is skipped). Every request
carries its own client address in `X-Forwarded-For`, so an API that trusts 127.0.0.1 as its proxy counts it as a
PC of its own, as the load test's users are.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from deploy.localstack.children import mes_command
from mes_contracts.numbering import MAX_LOT_SEQUENCE, format_lot_number

KINDS = {"operator": "operator", "manager": "manager", "listener": "viewer"}  # simulated user kind → role
SHARES = {"operator": 0.6, "manager": 0.2, "listener": 0.2}  # the locustfile's weights 6 : 2 : 2
WORKERS = [f"W{n:03d}" for n in range(1, 9)]  # `mes up` and the bench stack both have W001…W008
CONCURRENCY = 8


@dataclass
class Seeder:
    api_url: str
    env: Mapping[str, str]
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    accounts: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    admin_headers: dict[str, str] = field(default_factory=dict)
    addresses: itertools.count[int] = field(default_factory=itertools.count)
    lot_days: itertools.count[int] = field(default_factory=itertools.count)

    def address(self) -> str:
        n = next(self.addresses)
        return f"10.250.{n // 250 % 250}.{n % 250 + 1}"

    def create_admin(self) -> None:
        name, password = f"load-{self.run_id}-admin", secrets.token_urlsafe(18)
        done = subprocess.run(
            mes_command("user", "add", name, "--role", "admin", "--password-stdin"),
            input=f"{password}\n",
            text=True,
            capture_output=True,
            env={**os.environ, **self.env},
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mes user add {name}: {done.stdout}{done.stderr}")
        self.admin_headers = {"Authorization": f"Bearer {self.login(name, password)}"}

    def login(self, name: str, password: str) -> str:
        response = httpx.post(
            f"{self.api_url}/api/v1/auth/login",
            json={"username": name, "password": password},
            headers={"X-Forwarded-For": self.address()},
            timeout=60,
        )
        if response.status_code != 200:
            raise RuntimeError(f"login {name}: {response.status_code} {response.text}")
        return str(response.json()["data"]["access_token"])

    async def _post_all(self, path: str, bodies: list[tuple[dict[str, str], dict[str, Any]]]) -> list[int]:
        """POST every (headers, body) with CONCURRENCY in flight; returns the status codes in order."""
        gate = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.api_url, timeout=60) as client:

            async def one(headers: dict[str, str], body: dict[str, Any]) -> int:
                async with gate:
                    sent = {**headers, "X-Forwarded-For": self.address()}
                    return (await client.post(path, json=body, headers=sent)).status_code

            return list(await asyncio.gather(*(one(h, b) for h, b in bodies)))

    def ensure_accounts(self, users: int) -> None:
        """At least the accounts `users` simulated users need (by the locustfile's weights), created once."""
        todo = []
        for kind, role in KINDS.items():
            have = len(self.accounts[kind])
            for i in range(have, max(1, round(users * SHARES[kind]) + 1)):
                name, password = f"load-{self.run_id}-{kind[:3]}-{i:03d}", secrets.token_urlsafe(12)
                body = {"username": name, "role": role, "password": password, "must_change_password": False}
                todo.append((kind, name, password, body))
        codes = asyncio.run(self._post_all("/api/v1/users", [(self.admin_headers, t[3]) for t in todo]))
        bad = [(t[1], c) for t, c in zip(todo, codes, strict=True) if c != 201]
        if bad:
            raise RuntimeError(f"creating accounts: {bad[:5]}")
        for kind, name, password, _ in todo:
            self.accounts[kind].append((name, password))

    def lots(self, count: int) -> list[str]:
        """`count` new LOTs on past day shifts, created by the manager accounts in turn (each its own limit)."""
        managers = [self.login(n, p) for n, p in self.accounts["manager"][: max(1, min(20, count // 200 + 1))]]
        numbers: list[str] = []
        while len(numbers) < count:
            day = date(2021, 1, 1) + timedelta(days=random.Random(self.run_id).randrange(700) + next(self.lot_days))
            numbers += [format_lot_number(day, "D", seq) for seq in range(1, MAX_LOT_SEQUENCE + 1)]
        numbers = numbers[:count]
        bodies = [
            ({"Authorization": f"Bearer {managers[i % len(managers)]}"}, {"shift": "D", "lot_number": n})
            for i, n in enumerate(numbers)
        ]
        codes = asyncio.run(self._post_all("/api/v1/lots", bodies))
        bad = sorted({c for c in codes if c not in (201, 409)})
        if bad:
            raise RuntimeError(f"creating LOTs: HTTP {bad}")
        return [n for n, c in zip(numbers, codes, strict=True) if c == 201]

    def seed(self, users: int, lots: int) -> dict[str, Any]:
        """The seed file's content for one Locust run."""
        if not self.admin_headers:
            self.create_admin()
        self.ensure_accounts(users)
        return {
            "accounts": {k: [list(a) for a in v] for k, v in self.accounts.items()},
            "lots": self.lots(lots),
            "workers": WORKERS,
        }
