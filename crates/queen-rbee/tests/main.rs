//! Integration tests of queen-rbee.
