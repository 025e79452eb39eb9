//! The running sandboxes: who owns each, admission limits, and kill handles.
