"""Wire-level codecs and schemas shared by the coordinator, worker and client."""
