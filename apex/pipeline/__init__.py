"""The identity and attribution pipeline: extract → enrich → stitch → attribute → goals → publish.

run.run() processes one stored inbound event; the other modules are its steps and the stores they
write (tables.py holds the tables).
"""
