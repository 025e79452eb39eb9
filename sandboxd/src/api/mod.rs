//! The gRPC API on the Unix socket.
