//! Helpers shared by the arena tests (not a test target of its own).

#![allow(dead_code)] // each test file uses its own part

pub mod mock_arena;
pub mod tmux;
