"""SQLite, as Django's backend, whose writers wait for the database's write lock in short steps."""
