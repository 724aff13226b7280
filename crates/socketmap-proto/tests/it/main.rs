//! Integration tests of socketmap-proto.
