"""`python -m station_ui --station st03 [--gateway-url http://127.0.0.1:8703]`: open the station window."""

from __future__ import annotations

import argparse
import sys

from station_ui.config import SCREENS, StationConfig, check_loopback, default_gateway_url, process_of


def parse(argv: list[str] | None = None) -> StationConfig:
    parser = argparse.ArgumentParser(prog="python -m station_ui", description="The operator's station window.")
    parser.add_argument("--station", required=True, help="station id, e.g. st03 (MES_GW_STATION of its gateway)")
    parser.add_argument("--process", help="process of the station (default: stNN → PROC-00N)")
    parser.add_argument("--gateway-url", default=None, help="its gateway on loopback (default: MES_GW_LOCAL_PORT/8710)")
    parser.add_argument("--lang", choices=("ko", "en"), default="ko")
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--screen", choices=SCREENS, default="auto")
    parser.add_argument("--worker", help="worker already signed in (else the first badge scan)")
    parser.add_argument("--fullscreen", action="store_true")
    args = parser.parse_args(argv)
    try:
        return StationConfig(
            station=args.station,
            process_id=process_of(args.station, args.process),
            gateway_url=check_loopback(args.gateway_url or default_gateway_url()),
            lang=args.lang,
            theme=args.theme,
            worker=args.worker,
            screen=args.screen,
            fullscreen=args.fullscreen,
        )
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    from station_ui.app import StationWindow  # Tk only once the arguments are fine (and --help needs no display)

    try:
        window = StationWindow(config)
    except Exception as error:  # TclError: no display
        print(f"station window: cannot open a window: {error}", file=sys.stderr)
        return 2
    window.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
