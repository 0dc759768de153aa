"""Use cases: one function per thing a user or a station asks of the MES; adapters only translate."""
