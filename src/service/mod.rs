//! Installing yaku as a login service (being written).
