"""A test-side Kalshi request signer, written apart from both the panel's client and the simulator."""

import base64
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def sign(private_key: rsa.RSAPrivateKey, message: str, *, salt_length: int = 32) -> str:
    signature = private_key.sign(
        message.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length),
        hashes.SHA256(),
    )
    return base64.b64encode(signature).decode()


def now_ms() -> str:
    return str(int(time.time() * 1000))


class SignedClient:
    """requests with Kalshi's three auth headers; keyword overrides produce broken signatures on purpose.

    A PUT or POST says `Content-Type: application/json` even with no body, as Kalshi's official
    client does (the exchange refuses one without it); pass `headers={"Content-Type": None}` to leave it out.
    """

    def __init__(self, base_url: str, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        self.base_url = base_url
        self.key_id = key_id
        self.private_key = private_key

    def request(
        self,
        method: str,
        path: str,
        *,
        signed_path: str | None = None,
        timestamp: str | None = None,
        salt_length: int = 32,
        timeout: float = 5.0,
        **kwargs: Any,
    ) -> requests.Response:
        url = self.base_url + path
        timestamp = timestamp or now_ms()
        signed_path = signed_path if signed_path is not None else urlsplit(url).path
        headers = {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": timestamp,
            "KALSHI-ACCESS-SIGNATURE": sign(
                self.private_key, timestamp + method.upper() + signed_path, salt_length=salt_length
            ),
        }
        if method.upper() in ("PUT", "POST"):
            headers["Content-Type"] = "application/json"
        headers.update(kwargs.pop("headers", {}))  # requests drops a header whose value is None
        sender = kwargs.pop("session", None) or requests  # a Session keeps its connection alive between calls
        return sender.request(method, url, headers=headers, timeout=timeout, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def create_group(self, contracts_limit: int = 100, **fields: Any) -> str:
        response = self.post("/portfolio/order_groups/create", json={"contracts_limit": contracts_limit, **fields})
        assert response.status_code == 201, response.text
        return response.json()["order_group_id"]
