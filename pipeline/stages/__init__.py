"""The stages a recording passes through: functions from typed records to typed records, no database."""
