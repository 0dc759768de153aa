"""The `mes` command line: one entry point that starts each process of the MES."""
