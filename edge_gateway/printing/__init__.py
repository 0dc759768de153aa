"""Label printers at the station: transports (TCP 9100, serial), status queries, printing one program."""
