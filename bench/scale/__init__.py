"""Scale data for the read-side benchmarks: years of production written with COPY (`mes demo-data`).

plan.py decides the calendar and each LOT's timeline, values.py the process data as stations send it, lot_rows.py
turns one LOT into table rows, copy_text.py / samples.py encode them for COPY, loader.py writes them.
"""
