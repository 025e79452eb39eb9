//! Who is calling: peer credentials of the Unix socket connection.
