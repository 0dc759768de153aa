"""`python -m edge_gateway`: run one gateway configured only from `MES_GW_*` environment variables."""

from __future__ import annotations

import logging

from edge_gateway.bootstrap import run
from edge_gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()  # type: ignore[call-arg]  # station comes from MES_GW_STATION
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(settings)


if __name__ == "__main__":
    main()
