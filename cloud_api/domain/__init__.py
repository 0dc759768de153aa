"""Domain core: rules of the MES with no I/O."""
