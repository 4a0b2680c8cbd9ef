//! Integration tests of the rbee CLI.
