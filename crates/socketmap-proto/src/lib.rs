//! Netstring and Postfix socketmap codec (server and client side) for tokio.
