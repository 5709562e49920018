"""The frontend: matches a VO's queued jobs to factory entries and asks for pilots."""
