"""Labels: printer registry, serial issuing at PROC-007, print jobs (outbox), print/reprint, preview."""
