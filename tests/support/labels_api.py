"""Request builders and error checks of the label API tests (tests/labels_api/)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import zxingcpp
from PIL import Image

STATION = "st91"
PRINTER = "API-ZT410"
SILENT_STATION = "st92"  # a station whose gateway is down: nobody takes its jobs
SILENT_PRINTER = "API-SILENT"


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body)


def lot_request(lot: dict[str, Any], printer_id: str = PRINTER, **changes: Any) -> dict[str, Any]:
    body = {
        "label_type": "LOT",
        "lot_number": lot["lot_number"],
        "product_model": lot["product_model"],
        "target_quantity": lot["target_quantity"],
        "created_date": lot["created_date"],
        "printer_id": printer_id,
    }
    return {**body, **changes}


def serial_request(lot: dict[str, Any], serial: str, **changes: Any) -> dict[str, Any]:
    body = {
        "label_type": "SERIAL",
        "serial_number": serial,
        "lot_number": lot["lot_number"],
        "product_model": lot["product_model"],
        "created_date": lot["created_date"],
        "printer_id": PRINTER,
    }
    return {**body, **changes}


def decode(png: bytes) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def assert_error(response: httpx.Response, status: int, code: str, **data: Any) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["error_code"] == code, body
    for key, value in data.items():
        assert body["data"][key] == value, body
    return dict(body)
