"""Background processes: RQ job functions, the delivery dispatcher, and periodic jobs."""
