//! The daemon's configuration (TOML; every key optional; flags win).
