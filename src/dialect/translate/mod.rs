//! Cross-dialect translation (being written).
