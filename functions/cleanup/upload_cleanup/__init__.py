"""CleanupFunction: the scheduled removal of uploads that never arrived."""
