//! Integration tests of rbee-hive.
