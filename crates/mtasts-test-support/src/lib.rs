//! Test fixtures for mtasts: in-process DNS and HTTPS servers, a test CA, a CONNECT proxy.
